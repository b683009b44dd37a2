"""Shared machinery of the embedded synthetic modes.

A synthetic mode is a dataset generated on the fly, deterministically from a
seed, and cached under ``data.root`` in the same prepared format as the real
datasets (``<root>/synthetic_<mode>/<size>/``). Generation is per class with a
class-specific random generator ``numpy.random.default_rng([seed, mode_id,
class_index])``, so a class's images do not depend on generation order.
Classes are split 70 / 15 / 15 % with the seed (see :mod:`kml.data.splits`).
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from kml.data.datasets.base import ClassListing, DatasetSpec
from kml.data.errors import DataError
from kml.data.splits import seeded_class_split


class SyntheticSpec(DatasetSpec):
    """A procedurally generated mode (subclasses implement the two hooks)."""

    synthetic = True
    mode_id: ClassVar[int] = 0
    num_classes: ClassVar[int] = 300
    images_per_class: ClassVar[int] = 20
    split_schemes = ("seeded",)
    default_split = "seeded"
    source_help = "synthetic modes are generated automatically; nothing to download"

    @abc.abstractmethod
    def class_params(self, rng: np.random.Generator, num_classes: int) -> list[Any]:
        """Parameters of every class (one generator for the whole mode)."""

    @abc.abstractmethod
    def render_class(self, params: Any, rng: np.random.Generator, count: int, size: int) -> np.ndarray:
        """uint8 ``(count, size, size, C)`` images of one class."""

    def collect(self, tree, split: str, seed: int) -> ClassListing:
        """Synthetic modes have no source files: they are generated, never collected."""
        raise DataError(f"{self.name} is generated, not read from files; prepare it without source=")

    def describe(self) -> dict:
        """Extra facts recorded in the manifest (generator settings, fonts, ...)."""
        return {}

    def class_name(self, index: int) -> str:
        return f"{self.name.removeprefix('synthetic_')}{index:04d}"

    def listing(self, seed: int) -> ClassListing:
        """Classes per split; items are ``(class_index, params)``."""
        rng = np.random.default_rng([int(seed), self.mode_id, 1_000_003])
        params = self.class_params(rng, self.num_classes)
        names = [self.class_name(i) for i in range(len(params))]
        parts = seeded_class_split(names, seed)
        index = {name: i for i, name in enumerate(names)}
        listing = {split: [(name, [(index[name], params[index[name]])]) for name in members]
                   for split, members in parts.items()}
        return ClassListing(listing, extra={"generator": self.describe(), "images_per_class": self.images_per_class})

    def class_rng(self, seed: int, class_index: int) -> np.random.Generator:
        return np.random.default_rng([int(seed), self.mode_id, int(class_index)])


def smooth_resize(images: np.ndarray, size: int) -> np.ndarray:
    """Area-average float images ``(n, H, W[, C])`` down to ``size`` (H a multiple of size)."""
    factor = images.shape[1] // size
    if factor <= 1:
        return images
    n, h, w = images.shape[:3]
    rest = images.shape[3:]
    return images.reshape(n, size, factor, size, factor, *rest).mean(axis=(2, 4))


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] to uint8 (rounded, clipped)."""
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8)
