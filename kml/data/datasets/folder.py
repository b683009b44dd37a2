"""A dataset of your own: an ImageFolder-style tree of images, prepared under a name you choose.

Two layouts of the source folder are accepted:

* ``classes``: ``<source>/<class>/*.jpg`` (one folder per class). The classes
  are split into train / val / test by a seeded class split
  (:func:`kml.data.splits.seeded_class_split`) with the given fractions
  (default 70 / 15 / 15 %, like the built-in seeded splits);
* ``splits``: ``<source>/{train,val,test}/<class>/*.jpg``. The given splits
  are kept as they are; a missing split folder is an empty split.

``layout="auto"`` picks ``splits`` when every folder at the top of the source is
named ``train``, ``val`` or ``test``, and ``classes`` when none is. Images are
the files with one of :data:`IMAGE_EXTENSIONS` (any case) anywhere below a
class folder; other files are ignored (and counted), and so are hidden files
and folders (names starting with ``.``). Classes are sorted by name and the
images of a class by their path. Every image becomes RGB (grayscale tiled to 3
equal channels) and is resized like the built-in datasets' images.

Nothing needs registering: a prepared folder dataset is found by its manifest
in ``<data.root>/<name>/<variant>/manifest.json`` (:func:`find_folder_dataset`),
which records the source folder, the layout, the fractions and the split seed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from kml.commands import command
from kml.data.datasets.base import ClassListing, DatasetSpec, listing_from_split
from kml.data.errors import DataError
from kml.data.splits import DEFAULT_FRACTIONS, seeded_class_split
from kml.data.storage import SPLITS, Manifest, read_manifest

#: file name endings of images (compared case-insensitively)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")
#: accepted values of ``layout``
LAYOUTS = ("auto", "classes", "splits")
#: ``extra["kind"]`` of the manifest of a folder dataset
KIND = "folder"
#: the split scheme recorded for each layout
SCHEMES = {"classes": "seeded", "splits": "given"}

_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_FIX_IMAGE = "replace or remove that file, then prepare the folder dataset again"


def is_safe_name(name: Any) -> bool:
    """True for a name usable as one folder name on any system: letters, digits,
    ``_``, ``-`` and ``.``, starting with a letter or digit, at most 64 characters."""
    return isinstance(name, str) and _SAFE_NAME.fullmatch(name) is not None


def is_image(filename: str) -> bool:
    """True when ``filename`` ends with one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return filename.lower().endswith(IMAGE_EXTENSIONS)


def _hidden(name: str) -> bool:
    return name.startswith(".")


def split_fractions(
    train_fraction: float | None = None, val_fraction: float | None = None
) -> tuple[float, float, float]:
    """``(train, val, test)`` class fractions; None takes the default (0.7, 0.15); test gets the rest.

    Raises:
        DataError: a fraction outside [0, 1], or train + val above 1.
    """
    values = []
    for option, value, default in (
        ("train_fraction", train_fraction, DEFAULT_FRACTIONS[0]),
        ("val_fraction", val_fraction, DEFAULT_FRACTIONS[1]),
    ):
        if value is None:
            values.append(float(default))
            continue
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if isinstance(value, bool) or not 0.0 <= number <= 1.0:
            raise DataError(
                f"{option}={value!r} is not a fraction; pass a number between 0 and 1 (e.g. {option}={default})"
            )
        values.append(number)
    train, val = values
    if train + val > 1.0 + 1e-9:
        raise DataError(
            f"train_fraction={train} and val_fraction={val} add up to more than 1; lower them "
            "(the test split gets the rest)"
        )
    return train, val, round(max(0.0, 1.0 - train - val), 10)


def check_source_folder(source: Any) -> Path:
    """The absolute path of an existing source folder.

    Raises:
        DataError: no source given, the path does not exist, or it is a file.
    """
    if source in (None, ""):
        raise DataError("a folder dataset needs source=<the folder of your images> (one folder per class)")
    path = Path(source).expanduser()
    if not path.exists():
        raise DataError(f"source {path} does not exist; pass source=<the folder of your images> (one folder per class)")
    if not path.is_dir():
        raise DataError(
            f"source {path} is a file, not a folder; extract it and pass source=<the folder of your images> "
            "(one folder per class)"
        )
    return path.resolve()


def _subfolders(folder: Path) -> list[Path]:
    """Non-hidden folders directly in ``folder``, sorted by name; DataError on images lying there."""
    try:
        entries = sorted(os.scandir(folder), key=lambda entry: entry.name)
    except OSError as error:
        raise DataError(f"cannot list folder {folder} ({error.strerror or error}); check its permissions") from error
    strays = [entry.name for entry in entries if not _hidden(entry.name) and entry.is_file() and is_image(entry.name)]
    if strays:
        raise DataError(
            f"{folder} holds images directly ({strays[0]}, ...); put them in one folder per class: "
            f"{folder}/<class>/{strays[0]}"
        )
    return [Path(entry.path) for entry in entries if not _hidden(entry.name) and entry.is_dir()]


def detect_layout(source: Path, layout: str = "auto") -> str:
    """``classes`` or ``splits`` for ``source`` (see module docstring).

    Raises:
        DataError: an unknown ``layout``, or a top level that fits neither layout
            (split folders next to other folders, or ``layout=splits`` without them).
    """
    if layout not in LAYOUTS:
        raise DataError(f"layout={layout!r} is not one of {', '.join(LAYOUTS)}; pass e.g. layout=auto")
    top = [folder.name for folder in _subfolders(source)]
    split_named = [name for name in top if name in SPLITS]
    others = [name for name in top if name not in SPLITS]
    if layout == "classes":
        return "classes"
    if layout == "splits":
        if not split_named or others:
            what = (
                f"folders other than train/val/test ({', '.join(others[:3])})" if others else "no train/val/test folder"
            )
            raise DataError(
                f"layout=splits, but {source} has {what}; put one folder per class in {source}/train/, val/ and "
                "test/, or pass layout=classes"
            )
        return "splits"
    if split_named and others:
        raise DataError(
            f"{source} mixes split folders ({', '.join(split_named)}) with other folders ({', '.join(others[:3])}); "
            "keep only train/, val/ and test/ at its top (each holding one folder per class), "
            "or pass layout=classes to use every top folder as a class"
        )
    return "splits" if split_named else "classes"


class FolderSpec(DatasetSpec):
    """A folder of your own images prepared as dataset ``name`` (see module docstring).

    Args:
        name: the dataset name (checked by :func:`kml.data.registry.check_folder_name`).
        source: the absolute source folder.
        layout: ``classes`` or ``splits`` (already detected).
        fractions: ``(train, val, test)`` class fractions of the ``classes``
            layout; None for the ``splits`` layout.
    """

    def __init__(self, name: str, source: Path, layout: str, fractions: Sequence[float] | None = None):
        if layout not in SCHEMES:
            raise DataError(f"layout={layout!r} is not one of {', '.join(SCHEMES)}")
        self.name = name
        self.title = f"folder dataset {name!r}"
        self.source = Path(source)
        self.layout = layout
        self.fractions: tuple[float, ...] | None = None
        if layout == "classes":
            self.fractions = tuple(float(f) for f in (DEFAULT_FRACTIONS if fractions is None else fractions))
        self.default_split = SCHEMES[layout]
        self.split_schemes = (self.default_split,)
        self.source_help = "pass source=<the folder of your images> (one folder per class)"

    @classmethod
    def from_source(
        cls,
        name: str,
        source: Any,
        layout: str = "auto",
        train_fraction: float | None = None,
        val_fraction: float | None = None,
    ) -> "FolderSpec":
        """Check ``source`` and the options, detect the layout.

        Raises:
            DataError: a bad source, layout or fraction, or fractions given for
                the ``splits`` layout (whose splits are kept as they are).
        """
        folder = check_source_folder(source)
        fractions = split_fractions(train_fraction, val_fraction)
        detected = detect_layout(folder, layout)
        if detected == "splits" and (train_fraction is not None or val_fraction is not None):
            raise DataError(
                f"{folder} has train/val/test folders, whose split is kept as it is; leave out "
                "train_fraction/val_fraction, or pass layout=classes to split its top folders as classes"
            )
        return cls(name, folder, detected, fractions if detected == "classes" else None)

    @classmethod
    def from_manifest(cls, manifest: Manifest) -> "FolderSpec | None":
        """The spec recorded in a folder dataset's manifest; None for any other manifest."""
        extra = manifest.extra
        if extra.get("kind") != KIND:
            return None
        try:
            fractions = extra.get("fractions")
            return cls(
                manifest.dataset,
                Path(extra["source"]),
                str(extra["layout"]),
                None if fractions is None else [float(fractions[split]) for split in SPLITS],
            )
        except (KeyError, TypeError, ValueError, DataError):
            return None

    # ------------------------------------------------------------ identity
    def split_seed_for(self, scheme: str, split_seed: int) -> int:
        """The split seed that matters: none (0) for given splits, ``split_seed`` otherwise."""
        return 0 if self.layout == "splits" else int(split_seed)

    def allow_empty_splits(self, split: str) -> tuple[str, ...]:
        """Any split may be empty (a missing split folder, or fractions that leave a split empty)."""
        return SPLITS

    def manifest_facts(self) -> dict[str, Any]:
        """What the manifest's ``extra`` records about the source (see :meth:`from_manifest`)."""
        fractions = None if self.fractions is None else dict(zip(SPLITS, self.fractions))
        return {"kind": KIND, "source": str(self.source), "layout": self.layout, "fractions": fractions}

    def same_preparation(self, manifest: Manifest) -> bool:
        """True when ``manifest`` was prepared from the same source, layout and fractions."""
        other = FolderSpec.from_manifest(manifest)
        return (
            other is not None
            and other.source == self.source
            and other.layout == self.layout
            and other.fractions == self.fractions
        )

    def describe(self) -> str:
        """``from <source> (layout classes, fractions 0.7/0.15/0.15)``, for messages."""
        if self.fractions is None:
            return f"from {self.source} (layout {self.layout})"
        return f"from {self.source} (layout {self.layout}, fractions {'/'.join(f'{f:g}' for f in self.fractions)})"

    def check_apart(self, root: str | os.PathLike) -> None:
        """Refuse to write the prepared arrays inside the source folder, or to prepare a source
        that lies inside the dataset's own prepared folder ``<root>/<name>``.

        Raises:
            DataError: naming both folders and the fix.
        """
        root = Path(root).resolve()
        base = root / self.name
        if root == self.source or self.source in root.parents:
            raise DataError(
                f"data.root={root} is the source folder {self.source} or lies inside it, so the prepared arrays "
                "would become part of your images; pass a data.root outside the source folder"
            )
        if base == self.source or base in self.source.parents:
            raise DataError(
                f"source={self.source} is inside {base}, where the prepared dataset goes; move your images "
                "elsewhere or choose another name"
            )

    def stale_variants(self, root: str | os.PathLike, force: bool) -> list[Path]:
        """The prepared variants of this name in ``root`` made from another source, layout or
        fractions (replaced, with ``force``: a name keeps one source, layout and fractions).

        Raises:
            DataError: there are some and ``force`` is off, or ``<root>/<name>`` exists but
                holds no folder dataset (folders that are not prepared datasets are never touched).
        """
        base = Path(root) / self.name
        existing = folder_manifests(root, self.name)
        if not existing and base.is_dir() and any(not _hidden(child.name) for child in base.iterdir()):
            raise DataError(
                f"{base} already exists and is not a prepared folder dataset; choose another name for your "
                "dataset (or another data.root)"
            )
        stale = [(folder, manifest) for folder, manifest in existing if not self.same_preparation(manifest)]
        if stale and not force:
            old = FolderSpec.from_manifest(stale[0][1])
            raise DataError(
                f"dataset {self.name!r} in {root} was prepared {old.describe() if old else 'from another folder'}; "
                f"pass force=true to replace it with the one {self.describe()}, or choose another name"
            )
        return [folder for folder, _ in stale]

    # ------------------------------------------------------------- listing
    def collect(self, tree: Any, split: str, seed: int) -> ClassListing:
        """The classes of each split; a folder dataset walks :attr:`source` itself (``tree`` is
        not used), so that empty class folders are seen."""
        return self.listing(seed)

    def listing(self, split_seed: int) -> ClassListing:
        """Classes of each split and their images (paths relative to :attr:`source`, sorted).

        ``extra`` holds :meth:`manifest_facts` and the number of ignored files.

        Raises:
            DataError: the source holds no class folder, or a class folder holds no image.
        """
        ignored = 0

        def classes_in(folder: Path) -> dict[str, list[str]]:
            nonlocal ignored
            classes = {}
            for class_folder in _subfolders(folder):
                images, skipped = self._images(class_folder)
                ignored += skipped
                if not images:
                    raise DataError(
                        f"class folder {class_folder} holds no images ({', '.join(IMAGE_EXTENSIONS)}); "
                        "add images to it or remove it"
                    )
                classes[class_folder.name] = images
            return classes

        if self.layout == "classes":
            classes = classes_in(self.source)
            parts = seeded_class_split(list(classes), int(split_seed), self.fractions or DEFAULT_FRACTIONS)
            listing = listing_from_split(classes, parts)
        else:
            splits = {}
            for split in SPLITS:
                folder = self.source / split
                splits[split] = sorted(classes_in(folder).items()) if folder.is_dir() else []
            listing = ClassListing(splits)
        if not any(listing.splits[split] for split in SPLITS):
            where = (
                f"{self.source}/<class>/" if self.layout == "classes" else f"{self.source}/train/<class>/ (val/, test/)"
            )
            raise DataError(
                f"source {self.source} is empty: it holds no class folder with images; put your images in {where}"
            )
        listing.extra = {**self.manifest_facts(), "ignored_files": ignored}
        return listing

    def _images(self, class_folder: Path) -> tuple[list[str], int]:
        """Image paths below ``class_folder`` (relative to the source, POSIX, sorted) and the
        number of other (non-hidden) files there."""
        images, ignored = [], 0
        for dirpath, dirnames, filenames in os.walk(class_folder):
            dirnames[:] = [name for name in dirnames if not _hidden(name)]
            for filename in filenames:
                if _hidden(filename):
                    continue
                if is_image(filename):
                    images.append((Path(dirpath) / filename).relative_to(self.source).as_posix())
                else:
                    ignored += 1
        return sorted(images), ignored

    # ------------------------------------------------------------- loading
    def load_item(self, tree: Any, item: str, size: int) -> np.ndarray:
        """uint8 ``(size, size, 3)`` pixels of one image (``tree`` is not used)."""
        return self.load_image(item, size)

    def load_image(self, item: str, size: int) -> np.ndarray:
        """uint8 ``(size, size, 3)`` pixels of the image at ``<source>/<item>``.

        Raises:
            DataError: naming the file, when it cannot be read or decoded.
        """
        path = self.source / item
        try:
            data = path.read_bytes()
        except OSError as error:
            raise DataError(
                f"cannot read image {str(path)!r} ({error.strerror or error}); check that file, then prepare the "
                "folder dataset again"
            ) from error
        return self.preprocessing.apply(data, str(path), size, fix=_FIX_IMAGE)


def folder_manifests(root: str | os.PathLike, name: str) -> list[tuple[Path, Manifest]]:
    """``(variant folder, manifest)`` of every prepared variant of folder dataset ``name``
    in ``root``, the most recently prepared first; empty when there is none."""
    base = Path(root) / name
    if not is_safe_name(name) or not base.is_dir():
        return []
    found = []
    for variant in base.iterdir():
        if _hidden(variant.name) or not variant.is_dir():
            continue
        manifest = read_manifest(variant)
        if manifest is not None and manifest.dataset == name and FolderSpec.from_manifest(manifest) is not None:
            found.append((variant.stat().st_mtime, variant, manifest))
    found.sort(key=lambda entry: (-entry[0], entry[1].name))
    return [(variant, manifest) for _, variant, manifest in found]


def find_folder_dataset(root: str | os.PathLike, name: str) -> FolderSpec | None:
    """The spec of folder dataset ``name`` prepared in ``root`` (from its newest manifest), or None."""
    manifests = folder_manifests(root, name)
    return FolderSpec.from_manifest(manifests[0][1]) if manifests else None


def folder_dataset_names(root: str | os.PathLike) -> list[str]:
    """The names of the folder datasets prepared in ``root``, sorted."""
    base = Path(root)
    if not base.is_dir():
        return []
    return sorted(
        child.name
        for child in base.iterdir()
        if child.is_dir() and not _hidden(child.name) and folder_manifests(base, child.name)
    )


def prepare_folder_command(
    name: str,
    root: str | os.PathLike | None = None,
    image_size: int | None = None,
    split_seed: int = 0,
    spec: FolderSpec | None = None,
) -> str:
    """The shell command that prepares folder dataset ``name`` (from ``spec``'s recorded
    source, layout and fractions; ``source=<folder>`` without a spec)."""
    parts = [
        f"{command('prepare')} dataset=folder",
        f"source={spec.source if spec else '<folder>'}",
        f"name={name}",
    ]
    if root is not None:
        parts.append(f"data.root={root}")
    if image_size is not None:
        parts.append(f"image_size={image_size}")
    if spec is not None and spec.layout == "classes":
        if any((spec.source / split).is_dir() for split in SPLITS):  # auto would take them for split folders
            parts.append("layout=classes")
        if int(split_seed):
            parts.append(f"split_seed={int(split_seed)}")
        if spec.fractions is not None and tuple(spec.fractions[:2]) != tuple(DEFAULT_FRACTIONS[:2]):
            parts.append(f"train_fraction={spec.fractions[0]:g} val_fraction={spec.fractions[1]:g}")
    return " ".join(parts)
