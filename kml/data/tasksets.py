"""One call from dataset names to train/val/test episode samplers.

>>> from kml.data import get_tasksets
>>> tasksets = get_tasksets("synthetic", ways=5, shots=1, queries=15, root="data", image_size=32)
>>> batch = tasksets.train.sample(10)        # EpisodeBatch, modes round-robin
>>> batch.support.shape                      # (10, 5, 3, 32, 32)

In the spirit of learn2learn's ``get_tasksets``. Real datasets must be
prepared first (the error names the command); synthetic modes are generated
and cached on first use. A folder dataset of your own prepared in ``root``
(:func:`kml.data.prepare_folder`) is named like any other dataset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import torch

from kml.data.episodes import ModeData
from kml.data.errors import DataError, NotPreparedError
from kml.data.mixture import MixtureSampler, derive_seed
from kml.data.prepare import check_root, ensure_prepared
from kml.data.registry import resolve_names
from kml.data.storage import SPLITS, read_manifest
from kml.options import options_or_keywords

# (mode whose classes are dropped, mode that keeps them) when both are in one mixture
OVERLAPS = (("tinyimagenet", "miniimagenet"),)


@dataclass
class TaskSets:
    """Samplers of the three splits (``None`` for a split no mode has classes in,
    e.g. train and val of GTSRB prepared with ``split=test_only``)."""

    train: MixtureSampler | None
    val: MixtureSampler | None
    test: MixtureSampler | None

    def __iter__(self) -> Iterator[MixtureSampler | None]:
        return iter((self.train, self.val, self.test))

    def __getitem__(self, split: str) -> MixtureSampler | None:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        return getattr(self, split)


def load_modes(
    names: str | Sequence[str],
    split: str,
    root: str | Path = "data",
    image_size: int = 84,
    device: torch.device | str = "cpu",
    split_schemes: Mapping[str, str] | None = None,
    split_seed: int = 0,
    exclude_overlap: bool = True,
    verbose: bool = True,
) -> list[ModeData]:
    """:class:`ModeData` of one split for each named dataset (prepared or generated).

    With ``exclude_overlap``, classes shared by Tiny-ImageNet and mini-ImageNet
    are dropped from Tiny-ImageNet when both are named.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    resolved = resolve_names(names, root)
    schemes = dict(split_schemes or {})
    unknown = sorted(set(schemes) - set(resolved))
    if unknown:
        raise DataError(
            f"a split scheme is set for {', '.join(unknown)}, which is not in this mixture ({', '.join(resolved)}); "
            "set data.splits only for its datasets"
        )
    check_root(root)
    folders, missing = {}, []
    for name in resolved:  # every dataset that is not prepared is named at once, each with its command
        try:
            folders[name] = ensure_prepared(name, root, image_size, schemes.get(name), split_seed, verbose=verbose)
        except NotPreparedError as err:
            missing.append(err)
    if len(missing) == 1:
        raise missing[0]
    if missing:
        raise DataError(
            f"{len(missing)} datasets of this mixture are not prepared in {root} "
            f"({', '.join(err.name for err in missing)}); run: " + "; ".join(err.command for err in missing)
        )
    manifests = {name: read_manifest(folder) for name, folder in folders.items()}
    modes = []
    for name in resolved:
        mode = ModeData.load(folders[name], split, device=device, manifest=manifests[name])
        if exclude_overlap:
            for dropped, kept in OVERLAPS:
                if name == dropped and kept in manifests:
                    shared = {c for info in manifests[kept].splits.values() for c in info.classes}
                    mode = mode.without_classes(sorted(shared))
        modes.append(mode)
    return modes


@dataclass(frozen=True)
class DataOptions:
    """How :func:`get_tasksets` reads the prepared data and draws episodes.

    Attributes:
        replacement: sample the images of a class with replacement.
        rotations: Omniglot's per-task k*90 degree rotations (on by default).
        split_schemes: non-default split per dataset, e.g. ``{"omniglot": "lake"}``.
        split_seed: seed used when the datasets were prepared (seeded splits).
        exclude_overlap: drop Tiny-ImageNet classes that are mini-ImageNet classes
            when both are in the mixture.
        verbose: show generation progress for synthetic modes.
    """

    replacement: bool = False
    rotations: bool = True
    split_schemes: Mapping[str, str] | None = None
    split_seed: int = 0
    exclude_overlap: bool = True
    verbose: bool = True


def get_tasksets(
    name_or_names: str | Sequence[str],
    ways: int = 5,
    shots: int = 1,
    queries: int = 15,
    root: str | Path = "data",
    image_size: int = 84,
    device: torch.device | str = "cpu",
    seed: int = 0,
    *,
    options: DataOptions | None = None,
    **deprecated: Any,
) -> TaskSets:
    """Train/val/test samplers for a dataset or a mixture.

    Args:
        name_or_names: a dataset name (``"omniglot"``, or a folder dataset prepared
            in ``root``), the mixture ``"synthetic"``, a comma-separated string or a
            list of names.
        ways: ``N``, the classes of every task.
        shots: ``K``, the support images per class.
        queries: ``Q``, the query images per class.
        root: ``data.root`` holding prepared datasets (synthetic ones are
            generated there on first use).
        image_size: the prepared image size to serve (all modes alike).
        device: where images are held and episodes sampled.
        seed: episode seed; the three splits get seeds derived from it.
        options: how the data is read and episodes drawn (:class:`DataOptions`). The
            keywords of kml 0.1 (``replacement=``, ``split_seed=``, ..., each a field of
            :class:`DataOptions`) still work, with a ``DeprecationWarning``.
    """
    o = options_or_keywords(DataOptions, options, deprecated, "get_tasksets")
    samplers: dict[str, MixtureSampler | None] = {}
    for split in SPLITS:
        modes = load_modes(
            name_or_names, split, root, image_size, device, o.split_schemes, o.split_seed, o.exclude_overlap, o.verbose
        )
        modes = [mode for mode in modes if mode.num_classes > 0]
        seed_of_split = derive_seed("kml-episodes", seed, split) if split != "train" else int(seed)
        samplers[split] = MixtureSampler(modes, ways, shots, queries, seed=seed_of_split, device=device,
                                         replacement=o.replacement, rotations=o.rotations) if modes else None
    return TaskSets(**samplers)
