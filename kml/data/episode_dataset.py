"""Episode samplers as a ``torch.utils.data`` dataset, for your own loop or a Lightning module:

    from torch.utils.data import DataLoader
    from kml.data import EpisodeDataset, get_tasksets

    train = get_tasksets("synthetic", ways=5, shots=1, queries=15, image_size=32).train
    loader = DataLoader(EpisodeDataset(train, meta_batch_size=10, num_batches=100), batch_size=None)
    for batch in loader:             # EpisodeBatch: support (10, 5, 3, 32, 32), ...
        ...

Each item is one meta-batch (:class:`~kml.data.EpisodeBatch`), so the loader takes
``batch_size=None`` (no collation). In the loading process (``num_workers=0``) the
dataset draws from the sampler itself: the batches are exactly ``sampler.sample(...)``'s
and the sampler's ``state_dict()`` resumes them.
"""

from __future__ import annotations

from typing import Iterator

from torch.utils.data import IterableDataset, get_worker_info

from kml.data.episodes import EpisodeBatch
from kml.data.errors import DataError
from kml.data.mixture import MixtureSampler, derive_seed

__all__ = ["EpisodeDataset"]


class EpisodeDataset(IterableDataset):
    """Meta-batches of a :class:`~kml.data.MixtureSampler` as an ``IterableDataset``.

    Args:
        sampler: e.g. ``get_tasksets(...).train``.
        meta_batch_size: tasks ``T`` per item.
        num_batches: items per pass over the dataset (``len(dataset)``); ``None``: an
            endless stream. Default: ``None``.
        mode: draw every task from this mode (name or index), as a Multi-* specialist
            trains; ``None``: the mixture's round-robin. Default: ``None``.

    Items are :class:`~kml.data.EpisodeBatch` meta-batches: ``support (T, N*K, C, H, W)``,
    ``support_labels (T, N*K)``, ``query (T, N*Q, C, H, W)``, ``query_labels (T, N*Q)``,
    ``modes (T,)``, on the sampler's device.

    With ``num_workers=0`` the items are the sampler's own next meta-batches (the same
    tasks as calling ``sampler.sample(meta_batch_size)`` for the same seed). With worker
    processes each worker draws from a copy of the sampler reseeded from the sampler's
    seed, the worker's seed (the loader's base seed, new for every pass, plus the worker
    id: ``torch.manual_seed`` or the loader's ``generator`` make it reproducible) and the
    passes the worker has served (``persistent_workers=True`` keeps a worker's seed), and
    the ``num_batches`` items are dealt to the workers in turn; the stream is then not the
    sampler's own. Workers need a CPU sampler.
    """

    def __init__(
        self,
        sampler: MixtureSampler,
        meta_batch_size: int,
        num_batches: int | None = None,
        mode: int | str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(meta_batch_size, bool) or int(meta_batch_size) < 1:
            raise DataError(f"meta_batch_size must be a positive integer, got {meta_batch_size!r}")
        if num_batches is not None and (isinstance(num_batches, bool) or int(num_batches) < 0):
            raise DataError(f"num_batches must be None (endless) or >= 0, got {num_batches!r}")
        self.sampler = sampler
        self.meta_batch_size = int(meta_batch_size)
        self.num_batches = None if num_batches is None else int(num_batches)
        self.mode = None if mode is None else sampler.mode_index(mode)
        self._worker_passes = 0  # in a worker's copy: the passes it has served

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("an endless EpisodeDataset (num_batches=None) has no length")
        return self.num_batches

    def _draw(self, sampler: MixtureSampler) -> EpisodeBatch:
        if self.mode is None:
            return sampler.sample(self.meta_batch_size)
        return sampler.sample_mode(self.mode, self.meta_batch_size)

    def __iter__(self) -> Iterator[EpisodeBatch]:
        worker = get_worker_info()
        sampler, index, step = self.sampler, 0, 1
        if worker is not None:  # in a worker process, with its own copy of the dataset
            if sampler.device.type != "cpu":
                raise DataError(
                    f"a sampler on {sampler.device} cannot feed DataLoader worker processes; "
                    "use num_workers=0 (sampling is already vectorised), or a CPU sampler"
                )
            # worker.seed: the loader's base seed (new for every pass) + the worker id; a worker
            # holds a copy of the sampler as it was, so without this every pass would repeat.
            # A persistent worker keeps its seed: the passes it has served tell them apart
            passes = self._worker_passes
            self._worker_passes += 1
            sampler.generator.manual_seed(derive_seed("kml-episode-worker", sampler.seed, worker.seed, passes))
            index, step = worker.id, worker.num_workers
        while self.num_batches is None or index < self.num_batches:
            yield self._draw(sampler)
            index += step
