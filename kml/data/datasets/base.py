"""What every real dataset module provides.

A dataset module defines one :class:`DatasetSpec` subclass instance that knows

* where the official archives are (:attr:`DatasetSpec.remote_files`, empty
  when there is no official download, e.g. mini-ImageNet);
* how to recognise the dataset inside a user's folder (:attr:`markers`) and
  which archives there to open (:attr:`archive_patterns`);
* how to list its classes and images from a :class:`~kml.data.sources.SourceTree`
  and split them (:meth:`collect`);
* how to turn one listed item into a uint8 ``(size, size, C)`` array
  (:meth:`load_item`, default: the dataset's :attr:`preprocessing` of the file at
  that path: crop, colour, size and polarity, set once per dataset by the class
  attributes ``crop_bottom``, ``grayscale``, ``invert`` and ``polarity``).

The generic pipeline in :mod:`kml.data.prepare` does the rest (download,
decode with a progress bar, atomic write, manifest).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Sequence

import numpy as np

from kml.data.download import RemoteFile
from kml.data.errors import DataError
from kml.data.imaging import Preprocessing
from kml.data.sources import SourceTree
from kml.data.storage import SPLITS, variant_name


@dataclass
class ClassListing:
    """The result of :meth:`DatasetSpec.collect`.

    ``splits[split]`` is a list of ``(class_name, items)`` in storage order;
    ``extra`` is recorded in the manifest (e.g. the alphabets of each split).
    """

    splits: dict[str, list[tuple[str, list[Any]]]]
    extra: dict[str, Any] = field(default_factory=dict)

    def check(self, dataset: str, allow_empty: Sequence[str] = ()) -> None:
        """Every split present, non-empty (unless allowed) and with no empty class."""
        for split in SPLITS:
            classes = self.splits.get(split)
            if classes is None:
                self.splits[split] = classes = []
            if not classes and split not in allow_empty:
                raise DataError(
                    f"the {dataset} source gave no classes for split {split!r}; "
                    "pass source=<a complete copy of the dataset>"
                )
            for name, items in classes:
                if not items:
                    raise DataError(f"class {name!r} of {dataset} has no images in the source; use a complete copy")


class DatasetSpec(abc.ABC):
    """Description of one real dataset (see module docstring)."""

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    remote_files: ClassVar[tuple[RemoteFile, ...]] = ()
    markers: ClassVar[tuple[str, ...]] = ()
    archive_patterns: ClassVar[tuple[str, ...]] = ()
    split_schemes: ClassVar[tuple[str, ...]] = ("seeded",)
    default_split: ClassVar[str] = "seeded"
    grayscale: ClassVar[bool] = False
    invert: ClassVar[bool] = False
    rotations: ClassVar[bool] = False
    crop_bottom: ClassVar[int] = 0
    #: ``light_on_dark`` / ``dark_on_light`` when every prepared image has it (see
    #: :class:`kml.data.imaging.Preprocessing`), ``None`` otherwise
    polarity: ClassVar[str | None] = None
    source_help: ClassVar[str] = ""
    synthetic: ClassVar[bool] = False
    #: the size of the full official dataset (``None``: not fixed), against which a prepared
    #: subset is labelled in reports ("100 of 600 images per class")
    official_classes: ClassVar[int | None] = None
    official_images_per_class: ClassVar[int | None] = None

    @property
    def preprocessing(self) -> Preprocessing:
        """How this dataset's source image files become its prepared pixels: what the
        preparation applies, what a run records and what :func:`kml.data.load_images`
        applies to a user's files."""
        return Preprocessing(grayscale=self.grayscale, crop_bottom=self.crop_bottom, invert=self.invert,
                             polarity=self.polarity, generated=self.synthetic)

    @property
    def channels(self) -> int:
        return self.preprocessing.channels

    @abc.abstractmethod
    def collect(self, tree: SourceTree, split: str, seed: int) -> ClassListing:
        """List the classes of each split and their items (paths in ``tree``)."""

    def load_item(self, tree: SourceTree, item: Any, size: int) -> np.ndarray:
        """uint8 ``(size, size, C)`` pixels of one item (default: an image file in ``tree``)."""
        return self.preprocessing.apply(tree.read(item), item, size)

    def allow_empty_splits(self, split: str) -> tuple[str, ...]:
        """Splits allowed to have no classes under split scheme ``split``."""
        return ()

    def split_seed_for(self, scheme: str, split_seed: int) -> int:
        """The split seed a preparation with split scheme ``scheme`` is filed under (``split_seed``)."""
        return int(split_seed)

    def variant(self, image_size: int, scheme: str, split_seed: int) -> str:
        """Folder name of this dataset prepared at ``image_size`` with ``scheme`` and ``split_seed``
        (see :func:`kml.data.storage.variant_name`)."""
        return variant_name(image_size, scheme, self.default_split, self.split_seed_for(scheme, split_seed))

    def __repr__(self) -> str:
        return f"<dataset {self.name}>"


def group_by_class(matches, class_group: int | str = 1) -> dict[str, list[str]]:
    """Group regex matches of image paths by a class group, paths sorted."""
    classes: dict[str, list[str]] = {}
    for match in matches:
        classes.setdefault(match.group(class_group), []).append(match.group(0))
    return {name: sorted(paths) for name, paths in sorted(classes.items())}


def listing_from_split(classes: dict[str, list[Any]], split_names: dict[str, list[str]]) -> ClassListing:
    """Build a :class:`ClassListing` from class -> items and split -> class names."""
    return ClassListing({split: [(name, classes[name]) for name in names] for split, names in split_names.items()})
