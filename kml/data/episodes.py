"""N-way K-shot Q-query episodes, vectorised over the tasks of a meta-batch.

Shapes (T tasks, N ways, K shots, Q queries, C = 3 channels, H = W = image size):

* ``support``  float32 ``(T, N*K, C, H, W)`` in [0, 1], class-major: the K
  shots of label 0, then the K shots of label 1, ...;
* ``support_labels`` int64 ``(T, N*K)``: ``[0]*K + [1]*K + ... + [N-1]*K``;
* ``query``    float32 ``(T, N*Q, C, H, W)``, class-major likewise;
* ``query_labels`` int64 ``(T, N*Q)``;
* ``modes``    int64 ``(T,)``: index of each task's mode in the sampler's
  ``mode_names``.

Each task draws N distinct classes in random order, so label ``j`` names a
random class (labels are permuted per task), then K + Q distinct images of
each class (or with replacement, if asked). With rotations (Omniglot), each
class of each task is rotated by a random multiple of 90 degrees, support and
query alike. All randomness comes from an explicit ``torch.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from kml.data.errors import DataError
from kml.data.imaging import OUTPUT_CHANNELS as OUTPUT_CHANNELS  # re-exported: the channels of every episode
from kml.data.prepare import prepare_command
from kml.data.storage import Manifest, UnreadableSplitError, load_split_array, read_manifest


@dataclass
class EpisodeBatch:
    """A meta-batch of ``T`` few-shot tasks: the one task-batch type of the library
    (samplers return it, learners, evaluation and the transference analysis take it).

    Attributes:
        support: ``(T, N*K, C, H, W)``; support_labels: ``(T, N*K)``.
        query: ``(T, N*Q, C, H, W)``; query_labels: ``(T, N*Q)``.
        modes: int64 ``(T,)``, the index of each task's mode in ``mode_names``, or ``None``.
        ways, shots, queries: ``N``, ``K``, ``Q`` (``None`` where unknown: a learner
            infers ``ways`` from the labels).
        mode_names: the names the ``modes`` indices refer to (a sampler's modes).

    ``modes`` may also be given as one name per task; they become indices into
    ``mode_names`` (extended with any new name, in order of appearance).
    """

    support: torch.Tensor
    support_labels: torch.Tensor
    query: torch.Tensor
    query_labels: torch.Tensor
    modes: torch.Tensor | None = None
    ways: int | None = None
    shots: int | None = None
    queries: int | None = None
    mode_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.support.dim() != 5 or self.query.dim() != 5:
            raise ValueError(
                "support and query must be (T, N*K, C, H, W) and (T, N*Q, C, H, W); "
                f"got {tuple(self.support.shape)} and {tuple(self.query.shape)}"
            )
        counts = {self.support.shape[0], self.support_labels.shape[0], self.query.shape[0], self.query_labels.shape[0]}
        if len(counts) != 1:
            raise ValueError(f"support, query and labels disagree on the number of tasks: {sorted(counts)}")
        if self.mode_names is not None:
            self.mode_names = tuple(str(m) for m in self.mode_names)
        if self.modes is not None and not isinstance(self.modes, torch.Tensor):
            names = list(self.modes)
            if any(isinstance(m, str) for m in names):
                known = list(self.mode_names or ())
                for m in names:
                    if m not in known:
                        known.append(m)
                self.mode_names = tuple(known)
                names = [known.index(m) for m in names]
            self.modes = torch.as_tensor(names, dtype=torch.long)
        if self.modes is not None and self.modes.shape[0] != self.support.shape[0]:
            raise ValueError(f"{self.modes.shape[0]} modes for {self.support.shape[0]} tasks")

    @property
    def num_tasks(self) -> int:
        return int(self.support.shape[0])

    def __len__(self) -> int:
        return self.num_tasks

    @property
    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(support, support_labels, query, query_labels)``: a learner's arguments."""
        return self.support, self.support_labels, self.query, self.query_labels

    @property
    def task_modes(self) -> list[str] | None:
        """The mode name of each task (its index where no ``mode_names`` are known)."""
        if self.modes is None:
            return None
        indices = self.modes.tolist()
        if self.mode_names is None:
            return [str(i) for i in indices]
        return [self.mode_names[i] for i in indices]

    def _with(self, tensors, modes) -> "EpisodeBatch":
        return replace(self, support=tensors[0], support_labels=tensors[1], query=tensors[2], query_labels=tensors[3],
                       modes=modes)

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None, non_blocking: bool = False
    ) -> "EpisodeBatch":
        """A copy on ``device``; the images (floating tensors) also in ``dtype``."""

        def move(t: torch.Tensor) -> torch.Tensor:
            cast = dtype if (dtype is not None and t.is_floating_point()) else None
            return t.to(device=device, dtype=cast, non_blocking=non_blocking)

        return self._with([move(t) for t in self.tensors], None if self.modes is None else move(self.modes))

    def select(self, index: slice | int) -> "EpisodeBatch":
        """A subset of the tasks (an ``int`` keeps the task dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return self._with([t[index] for t in self.tensors], None if self.modes is None else self.modes[index])

    def repeat(self, count: int) -> "EpisodeBatch":
        """``count`` copies of a single task (broadcast views, no copy)."""
        if len(self) != 1:
            raise ValueError(f"repeat needs one task, got {len(self)}")
        tensors = [t.expand(count, *t.shape[1:]) for t in self.tensors]
        return self._with(tensors, None if self.modes is None else self.modes.expand(count))

    def chunks(self, size: int):
        """``(start, batch[start:start + size])`` over the tasks."""
        for start in range(0, len(self), size):
            yield start, self.select(slice(start, start + size))

    @staticmethod
    def cat(batches: Sequence["EpisodeBatch"]) -> "EpisodeBatch":
        """Concatenate batches with the same episode shape (their modes are joined by name)."""
        batches = list(batches)
        if not batches:
            raise ValueError("no task batches to concatenate")
        ways = {b.ways for b in batches}
        if len(ways) != 1:
            raise ValueError(f"task batches disagree on ways: {sorted(ways, key=str)}")
        tensors = [torch.cat([b.tensors[k] for b in batches]) for k in range(4)]
        modes = None if any(b.modes is None for b in batches) else [m for b in batches for m in b.task_modes]
        first = batches[0]
        return EpisodeBatch(*tensors, modes=modes, ways=first.ways, shots=first.shots, queries=first.queries)


@dataclass
class ModeData:
    """One split of one prepared dataset, held as a uint8 tensor on a device.

    Attributes:
        name: mode (dataset) name, e.g. ``"omniglot"``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        images: uint8 ``(num_images, C, H, W)``, class-contiguous.
        offsets, counts: int64 ``(num_classes,)``: class ``c`` is rows
            ``offsets[c] : offsets[c] + counts[c]``.
        class_names: names in storage order.
        rotations: rotate each class of a task by a random k*90 degrees.
    """

    name: str
    split: str
    images: torch.Tensor
    offsets: torch.Tensor
    counts: torch.Tensor
    class_names: list[str]
    rotations: bool = False
    excluded_classes: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def min_count(self) -> int:
        return int(self.counts.min()) if self.num_classes else 0

    def gather(self, draw: TaskDraw, shots: int) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 support ``(T, N*K, C, H, W)`` and query ``(T, N*Q, C, H, W)`` of drawn
        tasks (:func:`gather_tasks`); a sampler scales them by ``1 / 255``."""
        return gather_tasks(self, draw, shots)

    def to(self, device: torch.device | str) -> "ModeData":
        device = torch.device(device)
        if self.images.device == device:
            return self
        return replace(
            self, images=self.images.to(device), offsets=self.offsets.to(device), counts=self.counts.to(device)
        )

    def without_classes(self, names: Sequence[str]) -> "ModeData":
        """A copy without the named classes (images re-packed)."""
        drop = set(names)
        keep = [i for i, name in enumerate(self.class_names) if name not in drop]
        if len(keep) == self.num_classes:
            return self
        offsets, counts = self.offsets.cpu().tolist(), self.counts.cpu().tolist()
        rows = [torch.arange(offsets[i], offsets[i] + counts[i]) for i in keep]
        index = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long)
        new_counts = torch.tensor([counts[i] for i in keep], dtype=torch.long)
        new_offsets = torch.cumsum(new_counts, 0) - new_counts
        return replace(
            self,
            images=self.images.index_select(0, index.to(self.device)),
            offsets=new_offsets.to(self.device),
            counts=new_counts.to(self.device),
            class_names=[self.class_names[i] for i in keep],
            excluded_classes=sorted(set(self.excluded_classes) | (drop & set(self.class_names))),
        )

    @classmethod
    def from_arrays(
        cls,
        name: str,
        split: str,
        images: np.ndarray | torch.Tensor,
        counts: Sequence[int],
        class_names: Sequence[str] | None = None,
        rotations: bool = False,
        device: torch.device | str = "cpu",
    ) -> "ModeData":
        """Build from a uint8 ``(N, H, W, C)`` array grouped by class with ``counts`` per class."""
        array = torch.as_tensor(np.asarray(images))
        if array.dtype != torch.uint8 or array.ndim != 4:
            raise DataError(f"images of {name} must be uint8 (N, H, W, C), got {tuple(array.shape)} {array.dtype}")
        counts_t = torch.as_tensor(list(counts), dtype=torch.long)
        if int(counts_t.sum()) != array.shape[0]:
            raise DataError(f"class counts of {name} add up to {int(counts_t.sum())}, not {array.shape[0]} images")
        names = list(class_names) if class_names is not None else [str(i) for i in range(len(counts_t))]
        device = torch.device(device)
        return cls(
            name=name,
            split=split,
            images=array.permute(0, 3, 1, 2).contiguous().to(device),
            offsets=(torch.cumsum(counts_t, 0) - counts_t).to(device),
            counts=counts_t.to(device),
            class_names=names,
            rotations=rotations,
        )

    @classmethod
    def load(
        cls, folder: str | Path, split: str, device: torch.device | str = "cpu", manifest: Manifest | None = None
    ) -> "ModeData":
        """Load one split of a prepared folder (see :mod:`kml.data.storage`)."""
        folder = Path(folder)
        manifest = manifest or read_manifest(folder)
        if manifest is None:
            raise DataError(f"{folder} holds no complete prepared dataset; prepare it again with force=true")
        if split not in manifest.splits:
            raise DataError(f"split {split!r} is not in {folder}; use one of {', '.join(manifest.splits)}")
        info = manifest.splits[split]
        try:
            array = np.array(load_split_array(folder, split, manifest, mmap=True))
        except UnreadableSplitError as err:
            command = prepare_command(manifest.dataset, folder.parent.parent, manifest.image_size,
                                      manifest.split_scheme, manifest.split_seed)
            raise DataError(f"{err}; prepare it again: {command} force=true") from err
        return cls.from_arrays(
            manifest.dataset, split, array, info.counts, info.classes, rotations=manifest.rotations, device=device
        )


@dataclass
class TaskDraw:
    """The random choices of T tasks of one mode (all on one device).

    ``classes`` int64 ``(T, N)``: class indices, slot j gets label j;
    ``picks`` int64 ``(T, N, K+Q)``: image indices within each class;
    ``rotations`` int64 ``(T, N)`` in 0..3 (quarter turns), or None.
    """

    classes: torch.Tensor
    picks: torch.Tensor
    rotations: torch.Tensor | None

    def to(self, device: torch.device) -> "TaskDraw":
        rot = self.rotations.to(device) if self.rotations is not None else None
        return TaskDraw(self.classes.to(device), self.picks.to(device), rot)

    @staticmethod
    def cat(draws: Sequence["TaskDraw"]) -> "TaskDraw":
        rot = None if draws[0].rotations is None else torch.cat([d.rotations for d in draws])
        return TaskDraw(torch.cat([d.classes for d in draws]), torch.cat([d.picks for d in draws]), rot)


def draw_tasks(
    counts: torch.Tensor,
    num_tasks: int,
    ways: int,
    samples: int,
    generator: torch.Generator,
    replacement: bool = False,
    rotations: bool = False,
    count_range: tuple[int, int] | None = None,
) -> TaskDraw:
    """Draw classes, images and rotations for ``num_tasks`` tasks.

    ``counts`` (int64, ``(num_classes,)``, on the generator's device) gives
    the images per class; ``samples`` = K + Q images are drawn per class. The
    generator is consumed in a fixed order (classes, images, rotations).
    ``count_range``: ``(min, max)`` of ``counts`` when the caller knows it; then drawing
    reads nothing back from the device (no host synchronisation: a CUDA graph can
    capture it, rotations aside).
    """
    device = generator.device
    num_classes = counts.shape[0]
    classes = torch.rand(num_tasks, num_classes, generator=generator, device=device).argsort(dim=1)[:, :ways]
    chosen_counts = counts[classes]  # (T, N)
    if replacement:
        keys = torch.rand(num_tasks, ways, samples, generator=generator, device=device)
        picks = (keys * chosen_counts.unsqueeze(-1)).long().clamp_max_(chosen_counts.unsqueeze(-1) - 1)
    else:
        smallest, largest = count_range if count_range is not None else (int(counts.min()), int(counts.max()))
        keys = torch.rand(num_tasks, ways, largest, generator=generator, device=device)
        if smallest != largest:
            beyond = torch.arange(largest, device=device) >= chosen_counts.unsqueeze(-1)
            keys.masked_fill_(beyond, -1.0)
        picks = keys.topk(samples, dim=2).indices
    rot = torch.randint(0, 4, (num_tasks, ways), generator=generator, device=device) if rotations else None
    return TaskDraw(classes, picks, rot)


def _rotate_groups(images: torch.Tensor, quarter_turns: torch.Tensor) -> torch.Tensor:
    """Rotate ``images`` ``(G, S, C, H, W)`` group-wise by ``quarter_turns`` ``(G,)`` (in place)."""
    for k in (1, 2, 3):
        groups = (quarter_turns == k).nonzero().squeeze(1)
        if groups.numel():
            images[groups] = torch.rot90(images.index_select(0, groups), k, dims=(-2, -1))
    return images


def gather_tasks(mode: ModeData, draw: TaskDraw, shots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 support ``(T, N*K, C, H, W)`` and query ``(T, N*Q, C, H, W)`` of drawn tasks.

    C is the mode's stored channel count (1 or 3); rotations are applied.
    """
    num_tasks, ways, samples = draw.picks.shape
    index = mode.offsets[draw.classes].unsqueeze(-1) + draw.picks  # (T, N, K+Q)
    parts = []
    for part in (index[:, :, :shots], index[:, :, shots:]):
        count = part.shape[-1]
        images = mode.images.index_select(0, part.reshape(-1))
        images = images.view(num_tasks * ways, count, *mode.images.shape[1:])
        if draw.rotations is not None:
            _rotate_groups(images, draw.rotations.reshape(-1))
        parts.append(images.view(num_tasks, ways * count, *mode.images.shape[1:]))
    return parts[0], parts[1]


def episode_labels(num_tasks: int, ways: int, per_class: int, device: torch.device) -> torch.Tensor:
    """int64 ``(T, N*per_class)`` class-major labels ``[0]*k + [1]*k + ...``."""
    labels = torch.arange(ways, device=device).repeat_interleave(per_class)
    return labels.unsqueeze(0).expand(num_tasks, -1).contiguous()
