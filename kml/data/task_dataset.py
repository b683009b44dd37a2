"""Few-shot episodes from any map-style torch ``Dataset`` of ``(image, label)`` pairs,
with its own transforms (``torchvision.datasets.ImageFolder``, ``Omniglot``, ``FakeData``,
your own), in the spirit of learn2learn's ``TaskDataset``:

    from torchvision import datasets, transforms
    from kml.data import TaskDataset

    images = datasets.ImageFolder("birds/", transform=transforms.Compose([
        transforms.Resize((32, 32)), transforms.ToTensor()]))
    tasks = TaskDataset(images, ways=5, shots=1, queries=15, labels=images.targets, seed=0)
    batch = tasks.sample(4)          # EpisodeBatch: support (4, 5, 3, 32, 32), query (4, 75, 3, 32, 32)

A :class:`TaskDataset` is a :class:`~kml.data.MixtureSampler` with one mode, a
:class:`DatasetMode`: it samples, resumes (``state_dict``), serves
:class:`~kml.data.EpisodeDataset` and fixed evaluation tasks (``eval_tasks``) as every
sampler does, and it can be one mode of a mixture with prepared datasets
(``MixtureSampler([*get_tasksets(...).train.modes, tasks], ...)``). Its classes are
the dataset's labels (``classes=`` keeps some of them: a split), and
:meth:`TaskDataset.splits` splits them into train / val / test by a seed or by your lists.

Items are read when an episode needs them, through the dataset's ``__getitem__`` (so its
transforms run then, random ones drawing from torch's global generator, which
:class:`kml.engine.trainer.Trainer` checkpoints with the sampler). Which items form an
episode comes from the sampler's own generator only.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from kml.data.episodes import TaskDraw, _rotate_groups
from kml.data.errors import DataError
from kml.data.imaging import PIXEL_SCALE
from kml.data.mixture import MixtureSampler, derive_seed
from kml.data.splits import DEFAULT_FRACTIONS, seeded_class_split
from kml.data.storage import SPLITS
from kml.data.tasksets import TaskSets

__all__ = ["ClassSplit", "DatasetMode", "TaskDataset", "read_labels"]

_RESIZE_HINT = ("give the dataset a transform that makes every image square and of one size, "
                "e.g. transforms.Resize((32, 32))")


def _label(value: Any, index: int) -> Any:
    """A plain hashable label (a 0-d tensor or numpy scalar becomes its Python value)."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise DataError(f"item {index} of the dataset has a label of shape {tuple(value.shape)}; "
                            "labels must be single class ids")
        value = value.item()
    elif isinstance(value, np.generic):
        value = value.item()
    try:
        hash(value)
    except TypeError:
        raise DataError(f"item {index} of the dataset has an unhashable label {value!r}; labels must be class ids "
                        "(int or str)") from None
    return value


def read_labels(dataset: Any, name: str = "dataset", verbose: bool = True) -> list[Any]:
    """The label of every item of a map-style dataset, in order: each item is read once
    (``dataset[i][1]``; its transforms run), with a progress bar when ``verbose``."""
    return [_label(dataset[i][1], i) for i in tqdm(range(len(dataset)), desc=f"read {name} labels", unit="item",
                                                   disable=not verbose, leave=False)]


def _sorted(values: Iterable[Any]) -> list[Any]:
    values = list(values)
    try:
        return sorted(values)
    except TypeError:  # labels of mixed types: a fixed order all the same
        return sorted(values, key=lambda v: (type(v).__name__, str(v)))


def _to_image(value: Any, index: int) -> torch.Tensor:
    """float32 ``(C, H, W)`` of one item's image: a float tensor as it is, uint8 pixels
    (tensor, numpy ``(H, W[, C])``, PIL image) scaled by ``1 / 255`` as the prepared arrays are."""
    if isinstance(value, torch.Tensor):
        image = value
        if image.dim() == 2:
            image = image.unsqueeze(0)
        image = image.float().mul_(PIXEL_SCALE) if image.dtype == torch.uint8 else image.to(torch.float32)
    elif isinstance(value, np.ndarray) or hasattr(value, "getbands"):  # numpy array or PIL image
        if hasattr(value, "getbands"):
            value = value.convert("L" if value.mode in ("1", "L", "I", "I;16", "F") else "RGB")
        array = np.asarray(value)
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3:
            raise DataError(f"item {index} of the dataset is an array of shape {array.shape}, not an image "
                            "(H, W) or (H, W, C); give the dataset a transform such as transforms.ToTensor()")
        image = torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1)
        image = image.float().mul_(PIXEL_SCALE) if image.dtype == torch.uint8 else image.to(torch.float32)
    else:
        raise DataError(f"item {index} of the dataset holds a {type(value).__name__}, not an image (a tensor, a PIL "
                        "image or an array); give the dataset a transform such as transforms.ToTensor()")
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise DataError(f"item {index} of the dataset is an image of shape {tuple(image.shape)}; images must be "
                        "(C, H, W) with 1 or 3 channels (transforms.Grayscale or an RGB conversion makes them so)")
    return image


class DatasetMode:
    """One split of a map-style torch ``Dataset`` of ``(image, label)`` as a mode of a
    :class:`~kml.data.MixtureSampler` (the counterpart of :class:`~kml.data.ModeData`,
    whose images are prepared arrays): its classes are labels, and episodes read their
    items from the dataset when drawn.

    Args:
        dataset (torch.utils.data.Dataset): ``dataset[i]`` is ``(image, label, ...)``;
            the image a float tensor ``(C, H, W)`` (e.g. after ``transforms.ToTensor()``,
            used as it is, normalised or not), uint8 pixels (a tensor, a PIL image or a
            numpy ``(H, W[, C])`` array, scaled by ``1 / 255``), with 1 or 3 channels
            (1 is served as 3 equal ones) and one square size for every item.
        labels (sequence, optional): the label of every item, in order (e.g.
            ``ImageFolder.targets``); then no item is read to index the classes. ``None``:
            every item is read once for its label. Default: ``None``.
        classes (iterable, optional): the labels this mode uses (a split); ``None``: every
            label. Default: ``None``.
        name (str, optional): the mode's name in batches and metrics. Default: ``"dataset"``.
        split (str, optional): ``"train"``, ``"val"`` or ``"test"`` (its fixed evaluation
            tasks are seeded by it). Default: ``"train"``.
        rotations (bool, optional): rotate each class of a task by a random k*90 degrees,
            as Omniglot's. Default: ``False``.
        verbose (bool, optional): a progress bar while labels are read. Default: ``True``.

    Attributes:
        labels: every item's label, in order.
        class_labels: the labels of the classes, sorted; class ``c`` of a draw is
            ``class_labels[c]``.
        class_names: ``str`` of each of them.
        counts: int64 ``(num_classes,)`` items per class.
        indices: int64 ``(num_items,)`` dataset indices, class by class; class ``c`` is
            ``indices[offsets[c] : offsets[c] + counts[c]]``.

    The shape of the images is read from the first item of the first class, once, when it
    is first needed (a sampler asks for it when it is built).
    """

    def __init__(
        self,
        dataset: Any,
        labels: Sequence[Any] | None = None,
        classes: Iterable[Any] | None = None,
        name: str = "dataset",
        split: str = "train",
        rotations: bool = False,
        verbose: bool = True,
    ) -> None:
        if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
            raise DataError(f"a TaskDataset needs a map-style dataset (with __getitem__ and __len__), got "
                            f"{type(dataset).__name__}; wrap an iterable dataset's items in a list first")
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
        size = len(dataset)
        if labels is None:
            labels = read_labels(dataset, name, verbose)
        else:
            labels = list(labels)
            if len(labels) != size:
                raise DataError(f"labels has {len(labels)} entries but the dataset {size} items; pass one label per "
                                "item, in the dataset's order")
            labels = [_label(value, i) for i, value in enumerate(labels)]
        members: dict[Any, list[int]] = {}
        for i, label in enumerate(labels):
            members.setdefault(label, []).append(i)
        if classes is None:
            chosen = _sorted(members)
        else:
            chosen = _sorted({_label(value, -1) for value in classes})
            unknown = [c for c in chosen if c not in members]
            if unknown:
                raise DataError(f"classes {unknown[:5]} have no item in the dataset (its labels are e.g. "
                                f"{_sorted(members)[:5]}); pass labels of the dataset")
        self.dataset = dataset
        self.labels = labels
        self.name = str(name)
        self.split = split
        self.rotations = bool(rotations)
        self.class_labels = chosen
        self.class_names = [str(c) for c in chosen]
        self.excluded_classes: list[str] = []
        self.counts = torch.tensor([len(members[c]) for c in chosen], dtype=torch.long)
        self.offsets = torch.cumsum(self.counts, 0) - self.counts
        self.indices = torch.tensor([i for c in chosen for i in members[c]], dtype=torch.long)
        self._shape: tuple[int, int, int] | None = None

    # ------------------------------------------------------------ properties
    @property
    def num_classes(self) -> int:
        return len(self.class_labels)

    @property
    def min_count(self) -> int:
        return int(self.counts.min()) if self.num_classes else 0

    @property
    def device(self) -> torch.device:
        return self.counts.device

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of every image (read from the first item once)."""
        if self._shape is None:
            if not self.num_classes:
                raise DataError(f"{self.name} ({self.split}) has no classes; pass classes that the labels hold")
            first = int(self.indices[0])
            image = self._read(first, check=False)
            if image.shape[1] != image.shape[2]:
                raise DataError(f"item {first} of the dataset is {image.shape[1]}x{image.shape[2]}, not square; "
                                + _RESIZE_HINT)
            self._shape = tuple(image.shape)
        return self._shape

    @property
    def channels(self) -> int:
        return self.shape[0]

    @property
    def image_size(self) -> int:
        return self.shape[-1]

    def select(self, classes: Iterable[Any] | None, split: str) -> "DatasetMode":
        """The same dataset as another split: only ``classes`` (every label for ``None``),
        its labels not read again."""
        return DatasetMode(self.dataset, labels=self.labels, classes=classes, name=self.name, split=split,
                           rotations=self.rotations, verbose=False)

    def to(self, device: torch.device | str) -> "DatasetMode":
        """A view of this mode whose class counts live on ``device`` (items are read on the
        CPU and sent there)."""
        device = torch.device(device)
        if self.device == device:
            return self
        moved = copy.copy(self)
        moved.counts = self.counts.to(device)
        return moved

    def __repr__(self) -> str:
        return (f"DatasetMode(name={self.name!r}, split={self.split!r}, classes={self.num_classes}, "
                f"items={int(self.counts.sum())}, dataset={type(self.dataset).__name__})")

    # --------------------------------------------------------------- reading
    def _read(self, index: int, check: bool = True) -> torch.Tensor:
        item = self.dataset[index]
        image = _to_image(item[0] if isinstance(item, (tuple, list)) else item, index)
        if check and tuple(image.shape) != self.shape:
            raise DataError(f"item {index} of the dataset has shape {tuple(image.shape)}, the first one "
                            f"{self.shape}; " + _RESIZE_HINT)
        return image

    def gather(self, draw: TaskDraw, shots: int) -> tuple[torch.Tensor, torch.Tensor]:
        """float32 support ``(T, N*K, C, H, W)`` and query ``(T, N*Q, C, H, W)`` of drawn
        tasks (``draw`` as :func:`kml.data.draw_tasks` gives it), read from the dataset,
        rotated where the draw says, on the draw's device."""
        classes, picks = draw.classes.cpu(), draw.picks.cpu()
        num_tasks, ways, samples = picks.shape
        rows = self.indices[self.offsets[classes].unsqueeze(-1) + picks]  # (T, N, K+Q) dataset indices
        images = torch.stack([self._read(int(i)) for i in rows.reshape(-1).tolist()])
        images = images.view(num_tasks * ways, samples, *self.shape)
        if draw.rotations is not None:
            _rotate_groups(images, draw.rotations.cpu().reshape(-1))
        support = images[:, :shots].reshape(num_tasks, ways * shots, *self.shape)
        query = images[:, shots:].reshape(num_tasks, ways * (samples - shots), *self.shape)
        device = draw.classes.device
        return support.to(device), query.to(device)


@dataclass(frozen=True)
class ClassSplit:
    """The seeded class split of the prepared datasets, for :meth:`TaskDataset.splits`: the
    sorted labels permuted with ``seed`` and cut by ``fractions`` (train, val, test)
    (:func:`kml.data.splits.seeded_class_split`)."""

    seed: int = 0
    fractions: Sequence[float] = DEFAULT_FRACTIONS


class TaskDataset(MixtureSampler):
    """N-way K-shot Q-query episodes from a map-style torch ``Dataset`` of ``(image, label)``:
    a :class:`~kml.data.MixtureSampler` of one :class:`DatasetMode`.

    Args:
        dataset (torch.utils.data.Dataset or DatasetMode): the dataset (see
            :class:`DatasetMode`), or a :class:`DatasetMode` of it, for the mode's other
            settings (its split's name, ``rotations``, a quiet label read).
        ways (int): ``N``, the classes of every task.
        shots (int): ``K``, the support images per class.
        queries (int): ``Q``, the query images per class.
        labels (sequence, optional): every item's label, so that no item is read to index
            the classes (e.g. ``ImageFolder.targets``). Default: ``None`` (read them).
        classes (iterable, optional): the labels to draw classes from (a split).
            Default: ``None`` (all).
        name (str, optional): the mode's name. Default: ``"dataset"``.
        seed (int, optional): seed of the episode generator. Default: ``0``.
        device (torch.device or str, optional): where batches are served. Default: the CPU.
        replacement (bool, optional): draw a class's K + Q items with replacement.
            Default: ``False``.

    ``labels``, ``classes`` and ``name`` build the :class:`DatasetMode` of a dataset; a
    :class:`DatasetMode` given as ``dataset`` has them already.

    Returns batches as every sampler does: ``sample(T)`` gives an
    :class:`~kml.data.EpisodeBatch` with float32 ``support (T, N*K, 3, H, W)``,
    ``support_labels (T, N*K)``, ``query (T, N*Q, 3, H, W)`` and ``query_labels (T, N*Q)``;
    ``state_dict()`` holds its generator's state, so ``load_state_dict`` resumes the same
    episodes. Pass it (or its :attr:`mode`) among the modes of a ``MixtureSampler`` to
    mix it with other datasets.
    """

    def __init__(
        self,
        dataset: Any,
        ways: int,
        shots: int,
        queries: int,
        *,
        labels: Sequence[Any] | None = None,
        classes: Iterable[Any] | None = None,
        name: str = "dataset",
        seed: int = 0,
        device: torch.device | str = "cpu",
        replacement: bool = False,
    ) -> None:
        mode = _mode_of(dataset, labels, classes, name)
        super().__init__([mode], ways, shots, queries, seed=seed, device=device, replacement=replacement,
                         rotations=mode.rotations)

    @property
    def mode(self) -> DatasetMode:
        """The one :class:`DatasetMode`."""
        return self.modes[0]

    @classmethod
    def splits(
        cls,
        dataset: Any,
        ways: int,
        shots: int,
        queries: int,
        *,
        labels: Sequence[Any] | None = None,
        classes: Mapping[str, Iterable[Any]] | ClassSplit | None = None,
        name: str = "dataset",
        seed: int = 0,
        device: torch.device | str = "cpu",
        replacement: bool = False,
    ) -> TaskSets:
        """Train / val / test :class:`TaskDataset` of one dataset, its classes split between them.

        The split is yours (``classes={"train": [...], "val": [...], "test": [...]}``, labels
        of the dataset; a split left out has no classes) or a :class:`ClassSplit` (default:
        ``ClassSplit()``, the seeded class split of the prepared datasets, 70 / 15 / 15 % of
        the sorted labels permuted with seed 0). The labels are read once (or taken from
        ``labels``) for the three. Episode seeds as :func:`kml.data.get_tasksets`: train
        ``seed``, val and test seeds derived from it.

        Returns:
            :class:`kml.data.TaskSets` (``train, val, test = ...``); a split without
            classes is ``None``.
        """
        whole = _mode_of(dataset, labels, None, name)
        parts = _split_classes(whole, classes if classes is not None else ClassSplit())
        samplers = {}
        for split in SPLITS:
            samplers[split] = cls(
                whole.select(parts[split], split), ways, shots, queries, device=device, replacement=replacement,
                seed=int(seed) if split == "train" else derive_seed("kml-episodes", seed, split),
            ) if parts[split] else None
        return TaskSets(**samplers)


def _mode_of(dataset: Any, labels, classes, name: str) -> DatasetMode:
    """``dataset`` itself when it is a :class:`DatasetMode`, else its mode with these settings.

    Raises:
        DataError: a :class:`DatasetMode` together with labels, classes or a name.
    """
    if not isinstance(dataset, DatasetMode):
        return DatasetMode(dataset, labels=labels, classes=classes, name=name)
    if labels is not None or classes is not None or name != "dataset":
        raise DataError("a DatasetMode has its labels, classes and name already; pass them to DatasetMode(...) "
                        "or pass the dataset itself")
    return dataset


def _split_classes(mode: DatasetMode, classes: Mapping[str, Iterable[Any]] | ClassSplit) -> dict[str, list]:
    """``{split: labels}`` from given lists (each label in one split) or a :class:`ClassSplit`.

    Raises:
        DataError: an unknown split, or a label in two splits.
    """
    if isinstance(classes, ClassSplit):
        return seeded_class_split(mode.class_labels, classes.seed, classes.fractions)
    unknown = sorted(set(classes) - set(SPLITS))
    if unknown:
        raise DataError(f"classes has splits {unknown}; use the keys {', '.join(SPLITS)}")
    parts = {split: list(classes.get(split) or []) for split in SPLITS}
    seen: dict[Any, str] = {}
    for split, members in parts.items():
        for label in members:
            if label in seen and seen[label] != split:
                raise DataError(f"class {label!r} is in both the {seen[label]} and the {split} split; "
                                "give each class to one split")
            seen[label] = split
    return parts
