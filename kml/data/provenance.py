"""What data a run saw: per dataset, the prepared variant's manifest counts, the classes
and images the run's samplers actually use, a content hash of the prepared arrays, and
how image files become that dataset's pixels (its :class:`~kml.data.imaging.Preprocessing`:
crop, colour, size, inversion, polarity, normalisation), which is what
:func:`kml.data.load_images` applies to new files given ``dataset=<that name>``.

A run records this at training time (``run_info.json``, key ``data``), so that two runs
(or a run and its rerun on another machine) can be told apart by their data, not only by
their code: identical hashes mean bit-identical prepared arrays.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping, Sequence

from kml.data.prepare import ensure_prepared
from kml.data.registry import get_spec, resolve_names
from kml.data.storage import SPLITS, read_manifest

__all__ = ["arrays_digest", "dataset_provenance", "data_provenance"]


def arrays_digest(folder: str | Path, splits: Sequence[str] = SPLITS, chunk_size: int = 1 << 22) -> str:
    """SHA-256 of a prepared variant's split arrays (``train.npy``, ``val.npy``,
    ``test.npy``, in that order; each file's bytes preceded by its split name)."""
    digest = hashlib.sha256()
    for split in splits:
        path = Path(folder) / f"{split}.npy"
        if not path.is_file():
            continue
        digest.update(split.encode() + b"\0")
        with open(path, "rb") as handle:
            while chunk := handle.read(chunk_size):
                digest.update(chunk)
    return digest.hexdigest()


def _images_per_class(counts: Sequence[int]) -> dict[str, int] | None:
    return {"min": int(min(counts)), "max": int(max(counts))} if counts else None


def dataset_provenance(folder: str | Path) -> dict:
    """The manifest counts and content hash of one prepared variant.

    Returns:
        ``{"variant", "image_size", "split_scheme", "split_seed", "splits": {split:
        {"classes", "images", "images_per_class": {"min", "max"}}}, "sha256"}``.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"{folder} holds no complete prepared dataset")
    return {
        "variant": folder.name,
        "image_size": manifest.image_size,
        "split_scheme": manifest.split_scheme,
        "split_seed": manifest.split_seed,
        "splits": {
            name: {
                "classes": len(info.classes),
                "images": info.num_images,
                "images_per_class": _images_per_class(info.counts),
            }
            for name, info in manifest.splits.items()
        },
        "sha256": arrays_digest(folder, tuple(manifest.splits)),
    }


def data_provenance(
    names: str | Sequence[str],
    root: str | Path,
    image_size: int,
    split_schemes: Mapping[str, str] | None = None,
    split_seed: int = 0,
    exclude_overlap: bool = True,
) -> dict[str, dict]:
    """:func:`dataset_provenance` of every dataset of a mixture, keyed by dataset.

    Each split also says what the mixture's samplers use (``"used": {"classes",
    "images"}``), which differs from the manifest where classes are dropped
    (with ``exclude_overlap``, Tiny-ImageNet's classes that are mini-ImageNet classes,
    as :func:`kml.data.get_tasksets` does), and each dataset the size of the full
    official dataset (``"official": {"classes", "images_per_class"}``, ``None`` where
    it is not fixed or not known), and its preprocessing (``"preprocessing"``:
    :meth:`kml.data.imaging.Preprocessing.describe` of the dataset's own settings, the
    ones its preparation applies).
    """
    from kml.data.tasksets import OVERLAPS

    schemes = dict(split_schemes or {})
    resolved = resolve_names(names, root)
    out: dict[str, dict] = {}
    classes: dict[str, dict[str, tuple[list[str], list[int]]]] = {}
    for name in resolved:
        folder = ensure_prepared(name, root, image_size, schemes.get(name), split_seed, verbose=False)
        out[name] = dataset_provenance(folder)
        spec = get_spec(name, root)
        out[name]["official"] = {
            "classes": getattr(spec, "official_classes", None),
            "images_per_class": getattr(spec, "official_images_per_class", None),
        }
        out[name]["preprocessing"] = spec.preprocessing.describe(image_size)
        manifest = read_manifest(folder)
        classes[name] = {split: (info.classes, info.counts) for split, info in manifest.splits.items()}
    for name in resolved:
        dropped: set[str] = set()
        if exclude_overlap:
            for drop, keep in OVERLAPS:
                if name == drop and keep in classes:
                    dropped |= {c for names_, _ in classes[keep].values() for c in names_}
        for split, (names_, counts) in classes[name].items():
            kept = [count for c, count in zip(names_, counts) if c not in dropped]
            out[name]["splits"][split]["used"] = {"classes": len(kept), "images": int(sum(kept))}
    return out
