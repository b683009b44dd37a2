"""Prepared-dataset storage: layout, manifest and atomic writes.

A prepared dataset lives in one folder per (dataset, image size, split):

    <root>/<dataset>/<variant>/
        manifest.json      classes per split, counts, seed, sources, versions
        train.npy          uint8 (N_train, H, W, C), images grouped by class
        val.npy            uint8 (N_val, H, W, C)
        test.npy           uint8 (N_test, H, W, C)

``variant`` is the image size (``84``) for the dataset's default split and
seed, and ``84-<split>-seed<k>`` otherwise. Within a split the images of class
``c`` are rows ``offsets[c] : offsets[c] + counts[c]`` (classes in manifest
order). ``C`` is 1 for grayscale sources (Omniglot, synthetic glyphs) and 3
otherwise; samplers always serve 3 channels.

A preparation writes into a hidden temporary folder next to the target,
fsyncs every file, writes the manifest last and renames the folder into place
with :func:`os.replace`; a killed preparation leaves only a hidden
``.tmp-*`` folder that is never loaded and is cleaned by the next preparation.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from kml.data.errors import DataError
from kml.io import current_umask, fsync_dir, fsync_file

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")


def variant_name(image_size: int, split: str | None = None, default_split: str | None = None, seed: int = 0) -> str:
    """Folder name of one prepared variant (see module docstring)."""
    if (split is None or split == default_split) and seed == 0:
        return str(int(image_size))
    return f"{int(image_size)}-{split or default_split}-seed{int(seed)}"


def prepared_dir(root: str | os.PathLike, dataset: str, variant: str) -> Path:
    """``<root>/<dataset>/<variant>``."""
    return Path(root) / dataset / variant


@dataclass
class SplitInfo:
    """Classes of one split and how many images each has (in storage order)."""

    classes: list[str]
    counts: list[int]

    @property
    def num_images(self) -> int:
        return int(sum(self.counts))

    @property
    def offsets(self) -> list[int]:
        out, total = [], 0
        for count in self.counts:
            out.append(total)
            total += count
        return out


@dataclass
class Manifest:
    """Everything recorded about one prepared variant."""

    dataset: str
    image_size: int
    channels: int
    split_scheme: str
    split_seed: int
    splits: dict[str, SplitInfo]
    rotations: bool = False
    sources: list[dict] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    kml_version: str = ""
    format: int = FORMAT_VERSION

    def to_json(self) -> dict:
        return {
            "format": self.format,
            "kml_version": self.kml_version,
            "dataset": self.dataset,
            "image_size": self.image_size,
            "channels": self.channels,
            "split_scheme": self.split_scheme,
            "split_seed": self.split_seed,
            "rotations": self.rotations,
            "splits": {
                name: {
                    "num_classes": len(info.classes),
                    "num_images": info.num_images,
                    "classes": info.classes,
                    "counts": info.counts,
                }
                for name, info in self.splits.items()
            },
            "sources": self.sources,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, data: dict) -> "Manifest":
        return cls(
            dataset=data["dataset"],
            image_size=int(data["image_size"]),
            channels=int(data["channels"]),
            split_scheme=data["split_scheme"],
            split_seed=int(data["split_seed"]),
            splits={
                name: SplitInfo(list(info["classes"]), [int(c) for c in info["counts"]])
                for name, info in data["splits"].items()
            },
            rotations=bool(data.get("rotations", False)),
            sources=list(data.get("sources", [])),
            extra=dict(data.get("extra", {})),
            kml_version=data.get("kml_version", ""),
            format=int(data.get("format", FORMAT_VERSION)),
        )


def read_manifest(folder: Path) -> Manifest | None:
    """The manifest of a complete prepared folder, or None if there is none."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = Manifest.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError):
        return None
    for split in manifest.splits:
        if not (Path(folder) / f"{split}.npy").is_file():
            return None
    return manifest


class UnreadableSplitError(DataError):
    """A prepared split's array cannot be read (its loader adds how to prepare it again)."""


def load_split_array(folder: Path, split: str, manifest: Manifest, mmap: bool = True) -> np.ndarray:
    """The uint8 ``(N, H, W, C)`` array of one split (memory-mapped by default).

    Raises:
        UnreadableSplitError: the file cannot be read as an array.
        DataError: its shape or dtype is not the manifest's.
    """
    path = Path(folder) / f"{split}.npy"
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise UnreadableSplitError(f"prepared file {path} is unreadable ({error})") from error
    info = manifest.splits[split]
    expected = (info.num_images, manifest.image_size, manifest.image_size, manifest.channels)
    if array.dtype != np.uint8 or tuple(array.shape) != expected:
        raise DataError(
            f"prepared file {path} has shape {tuple(array.shape)} {array.dtype}, expected {expected} uint8; "
            "prepare the dataset again with force=true"
        )
    return array


class AtomicDir:
    """Write a folder atomically: ``with AtomicDir(target) as tmp: ...write into tmp...``.

    On a clean exit the temporary folder is fsynced and renamed to ``target``
    (replacing an older one); on an exception it is removed. Stale temporary
    folders of killed runs (``.tmp-<name>-*`` next to the target) are removed
    on entry.
    """

    def __init__(self, target: Path):
        self.target = Path(target)
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        parent = self.target.parent
        parent.mkdir(parents=True, exist_ok=True)
        for pattern in (f".tmp-{self.target.name}-*", f".old-{self.target.name}-*"):
            for stale in parent.glob(pattern):
                shutil.rmtree(stale, ignore_errors=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{self.target.name}-", dir=parent))
        os.chmod(self.tmp, 0o777 & ~current_umask())  # mkdtemp makes it private; a dataset folder is not
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.tmp is not None
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return
        for path in self.tmp.rglob("*"):
            if path.is_file():
                fsync_file(path)
        fsync_dir(self.tmp)
        old = None
        if self.target.exists():
            old = self.target.parent / f".old-{self.target.name}-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.target, old)
        os.replace(self.tmp, self.target)
        fsync_dir(self.target.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def preparation_lock(root: str | os.PathLike, dataset: str, variant: str) -> Iterator[None]:
    """Hold an exclusive lock on ``<root>/.locks/<dataset>-<variant>.lock`` (``filelock``:
    ``flock`` on POSIX, ``LockFileEx`` on Windows).

    Processes preparing the same variant at once (e.g. the ranks of a
    distributed run generating a synthetic mode) take turns; the later ones
    then find it prepared.
    """
    from filelock import FileLock

    folder = Path(root) / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder / f"{dataset}-{variant}.lock")):
        yield


def write_manifest(folder: Path, manifest: Manifest) -> None:
    """Write ``manifest.json`` (call last, inside an :class:`AtomicDir`)."""
    (Path(folder) / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=1, sort_keys=False) + "\n")
