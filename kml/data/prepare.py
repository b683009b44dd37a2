"""Preparation: source or download -> uint8 arrays per split + manifest.

``prepare_dataset("cub", root="data", image_size=84)`` downloads (or, with
``source=``, reads) the official archive, decodes every image once with a
progress bar, and writes ``<root>/cub/84/{train,val,test}.npy`` plus
``manifest.json`` atomically (see :mod:`kml.data.storage`). Calling it again
is a no-op unless ``force=True``. Synthetic modes are generated instead of
read; :func:`ensure_prepared` does that automatically on first use.
``prepare_folder("/my/images", "mydata", root="data")`` prepares a folder of
your own images the same way (see :mod:`kml.data.datasets.folder`).
"""

from __future__ import annotations

import logging
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
from tqdm.auto import tqdm

from kml.commands import command
from kml.data.archives import verify_checksum
from kml.data.datasets.base import ClassListing, DatasetSpec
from kml.data.datasets.folder import FolderSpec, prepare_folder_command
from kml.data.download import downloads_dir, fetch
from kml.data.errors import DataError, NotPreparedError
from kml.data.registry import SPECS, check_folder_name, get_spec
from kml.data.sources import SourceTree, find_source
from kml.data.storage import (
    SPLITS,
    AtomicDir,
    Manifest,
    SplitInfo,
    preparation_lock,
    prepared_dir,
    read_manifest,
    write_manifest,
)
from kml.data.synthetic.base import SyntheticSpec
from kml.recipes import EPISODE_DEFAULTS

logger = logging.getLogger(__name__)

BLOCK = 256  # images decoded per thread-pool round
MIN_IMAGE_SIZE = 8


def _kml_version() -> str:
    try:
        import kml

        return str(getattr(kml, "__version__", ""))
    except Exception:  # pragma: no cover
        return ""


def _say(message: str, verbose: bool) -> None:
    if verbose:
        print(message, file=sys.stderr, flush=True)


def resolve_split(spec: DatasetSpec, split: str | None) -> str:
    """The split scheme to use (the dataset's default when None); DataError if unknown."""
    scheme = spec.default_split if split in (None, "", "default") else str(split)
    if scheme not in spec.split_schemes:
        raise DataError(
            f"unknown split {scheme!r} for {spec.name}; choose one of: {', '.join(spec.split_schemes)}"
        )
    return scheme


def prepared_path(name: str, root: str | Path, image_size: int, split: str | None = None, split_seed: int = 0) -> Path:
    """Folder where ``name`` prepared at ``image_size`` with this split lives."""
    spec = get_spec(name, root)
    scheme = resolve_split(spec, split)
    return prepared_dir(root, name, spec.variant(image_size, scheme, split_seed))


def prepare_command(name: str, root: str | Path, image_size: int, split: str | None = None, split_seed: int = 0) -> str:
    """The shell command that prepares ``name`` with these settings."""
    spec = get_spec(name, root)
    if isinstance(spec, FolderSpec):
        return prepare_folder_command(name, root, image_size, spec.split_seed_for(spec.default_split, split_seed), spec)
    parts = [f"{command('prepare')} dataset={name}", f"data.root={root}", f"image_size={image_size}"]
    scheme = resolve_split(spec, split)
    if scheme != spec.default_split:
        parts.append(f"split={scheme}")
    if split_seed:
        parts.append(f"split_seed={split_seed}")
    if not spec.remote_files and not spec.synthetic:
        parts.append("source=<folder holding the files>")
    return " ".join(parts)


def _matches(manifest: Manifest | None, name: str, image_size: int, scheme: str, split_seed: int) -> bool:
    return (
        manifest is not None
        and manifest.dataset == name
        and manifest.image_size == image_size
        and manifest.split_scheme == scheme
        and manifest.split_seed == split_seed
    )


def _check_image_size(image_size: Any) -> int:
    try:
        size = int(image_size)
    except (TypeError, ValueError):
        raise DataError(f"image_size must be an integer, got {image_size!r}; pass e.g. image_size=84") from None
    if size < MIN_IMAGE_SIZE or size > 1024:
        raise DataError(f"image_size={size} is out of range; pass a size between {MIN_IMAGE_SIZE} and 1024 (e.g. 84)")
    return size


def _chunks(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _write_split(
    folder: Path, split: str, shape: tuple[int, ...], blocks: Iterable[np.ndarray]
) -> None:
    """Write ``<folder>/<split>.npy`` of ``shape`` from consecutive uint8 blocks."""
    path = folder / f"{split}.npy"
    if shape[0] == 0:
        np.save(path, np.zeros(shape, dtype=np.uint8))
        return
    array = np.lib.format.open_memmap(path, mode="w+", dtype=np.uint8, shape=shape)
    position = 0
    for block in blocks:
        array[position : position + len(block)] = block
        position += len(block)
    if position != shape[0]:  # pragma: no cover - internal consistency
        raise RuntimeError(f"wrote {position} of {shape[0]} images of split {split}")
    array.flush()
    del array


def _locate_sources(
    spec: DatasetSpec, root: Path, source: str | Path | None, download: bool, verbose: bool
) -> list[Path]:
    if source not in (None, ""):
        path = Path(source).expanduser()
        if not path.exists():
            raise DataError(f"source {path} does not exist; pass source=<the {spec.title} archive or its folder>")
        if path.is_file():
            return [path]
        found = find_source(path, spec.markers)
        if found is None:
            raise DataError(
                f"no {spec.title} files found in {path} (looked for {', '.join(spec.markers)}); "
                f"pass source=<the archive or the folder holding it> ({spec.source_help})"
            )
        return [found]
    if not spec.remote_files:
        raise DataError(f"{spec.title} cannot be downloaded automatically: {spec.source_help}")
    folder = downloads_dir(root, spec.name)
    if not download:
        missing = [r.filename for r in spec.remote_files if not (folder / r.filename).is_file()]
        if missing:
            raise DataError(
                f"archive {', '.join(missing)} missing from {folder}; run with download=true, "
                f"or pass source=<folder holding it> ({spec.source_help})"
            )
    for remote in spec.remote_files:
        if download:
            _say(f"{spec.name}: fetching {remote.filename} (MD5-verified) into {folder}", verbose)
            fetch(remote, folder, spec.name)
        else:
            verify_checksum(
                folder / remote.filename,
                remote.md5,
                "md5",
                fix=f"delete it and run with download=true, or pass source=<folder holding {remote.filename}>",
            )
    return [folder]


def prepare_dataset(
    name: str,
    root: str | Path = "data",
    image_size: int = 84,
    source: str | Path | None = None,
    split: str | None = None,
    split_seed: int = 0,
    force: bool = False,
    download: bool = True,
    workers: int | None = None,
    verbose: bool = True,
) -> Path:
    """Prepare one dataset (or generate one synthetic mode); return its folder.

    Args:
        name: a dataset name (see :func:`kml.data.known_names`).
        root: ``data.root``; arrays go to ``<root>/<name>/<variant>/``.
        image_size: side of the stored square images.
        source: a local archive or folder to read instead of downloading.
        split: split scheme (``vinyals``/``lake`` for Omniglot, ``seeded`` /
            ``test_only`` for GTSRB, ...); None for the dataset's default.
        split_seed: seed of seeded class splits (and of synthetic generation).
        force: prepare again even if a matching prepared folder exists.
        download: fetch official archives when ``source`` is not given.
        workers: decoding threads (default: up to 4, one per core).
        verbose: print progress (tqdm bar and messages on stderr).

    A folder dataset already prepared in ``root`` (see :func:`prepare_folder`) is
    prepared again from its recorded source, layout and fractions (or from ``source``).
    """
    spec = get_spec(name, root)
    size = _check_image_size(image_size)
    scheme = resolve_split(spec, split)
    if isinstance(spec, FolderSpec):
        fractions = spec.fractions or (None, None, None)
        return prepare_folder(spec.source if source in (None, "") else source, name, root, size,
                              split_seed=split_seed, fractions=fractions[:2],
                              layout=spec.layout, force=force, workers=workers, verbose=verbose)
    split_seed = int(split_seed)
    root = check_root(root)
    variant = spec.variant(size, scheme, split_seed)
    target = prepared_dir(root, name, variant)
    if not force and _matches(read_manifest(target), name, size, scheme, split_seed):
        _say(f"{name}: already prepared at {target}", verbose)
        return target
    with preparation_lock(root, name, variant):
        if not force and _matches(read_manifest(target), name, size, scheme, split_seed):
            _say(f"{name}: already prepared at {target} (by another process)", verbose)
            return target
        workers = workers or min(4, max(1, _cpu_count()))
        if isinstance(spec, SyntheticSpec):
            return _generate(spec, target, size, split_seed, workers, verbose)
        sources = _locate_sources(spec, root, source, download, verbose)
        _prepare_from(spec, sources, root / name / f".extract-{variant}", target, (size, scheme, split_seed),
                      workers, verbose)
    _say(f"{name}: prepared at {target}", verbose)
    return target


def _prepare_from(spec: DatasetSpec, sources, scratch: Path, target: Path, setting: tuple[int, str, int],
                  workers: int, verbose: bool) -> None:
    """Read a real dataset's ``sources`` (tar archives unpacked into ``scratch``, removed
    afterwards) and write its prepared arrays to ``target``; ``setting``: image size,
    split scheme and split seed."""
    size, scheme, split_seed = setting
    shutil.rmtree(scratch, ignore_errors=True)  # left over by a killed run of this variant
    try:
        with SourceTree(sources, spec.archive_patterns, scratch=scratch) as tree:
            listing = spec.collect(tree, scheme, split_seed)
            listing.check(spec.title, spec.allow_empty_splits(scheme))

            def load(item: Any) -> np.ndarray:
                return spec.load_item(tree, item, size)

            _write_prepared(spec, listing, target, size, scheme, split_seed, tree.origins, load, workers, verbose)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def prepare_folder(source: str | Path, name: str, root: str | Path = "data", image_size: int = 84,
                   split_seed: int = 0, fractions: tuple[float | None, float | None] | None = None,
                   layout: str = "auto", force: bool = False, workers: int | None = None, verbose: bool = True,
                   **deprecated: float | None) -> Path:
    """Prepare a folder of your own images as dataset ``name``; return its prepared folder.

    Stored like a built-in dataset's (``<root>/<name>/<variant>/``: uint8
    ``(N, image_size, image_size, 3)`` arrays, ``manifest.json``), ``name`` then works
    wherever a dataset name does (:func:`kml.data.get_tasksets`, ``mode.datasets=[<name>]``).

    Args:
        source: ``<source>/<class>/*.jpg`` or ``<source>/{train,val,test}/<class>/*.jpg``
            (see :mod:`kml.data.datasets.folder`).
        name: the dataset name (a safe folder name, not a built-in dataset or mixture).
        root: ``data.root``.
        image_size: side of the stored square images.
        split_seed: seed of the class split (``classes`` layout; given splits ignore it).
        fractions: ``(train, val)`` fractions of the classes in the ``classes`` layout
            (``None`` for either: 0.7, 0.15); test gets the rest. kml 0.1's
            ``train_fraction=`` and ``val_fraction=`` still work, with a ``DeprecationWarning``.
        layout: ``auto``, ``classes`` or ``splits``.
        force: prepare again even if prepared; also to reuse ``name`` for another source,
            layout or fractions (the old variants are then removed).
        workers: decoding threads (default: up to 4, one per core).
        verbose: print progress (tqdm bar and messages on stderr).

    Raises:
        DataError: a bad name, source, layout, fraction or image (named), or a name already
            used in ``root`` for another folder. Nothing is left behind.
    """
    name, size, root = check_folder_name(name), _check_image_size(image_size), check_root(root)
    spec = FolderSpec.from_source(name, source, layout, *_fractions(fractions, deprecated))
    spec.check_apart(root)
    scheme = spec.default_split
    split_seed = spec.split_seed_for(scheme, split_seed)
    variant = spec.variant(size, scheme, split_seed)
    target, stale = prepared_dir(root, name, variant), spec.stale_variants(root, force)

    def done() -> bool:
        manifest = read_manifest(target)
        return _matches(manifest, name, size, scheme, split_seed) and spec.same_preparation(manifest)

    if not force and done():
        _say(f"{name}: already prepared at {target}", verbose)
        return target
    listing = spec.listing(split_seed)  # every source error is raised before anything is written
    listing.check(spec.title, spec.allow_empty_splits(scheme))
    check_task_classes(name, {split: len(listing.splits[split]) for split in SPLITS})
    if _write_folder(spec, listing, (root, variant, target), (size, scheme, split_seed), workers,
                     lambda: not force and done(), verbose):
        for folder in (f for f in stale if f != target):
            shutil.rmtree(folder, ignore_errors=True)
        counts = " / ".join(str(len(listing.splits[split])) for split in SPLITS)
        _say(f"{name}: prepared at {target} ({counts} classes, layout {spec.layout})", verbose)
    return target


def _write_folder(spec: FolderSpec, listing, place: tuple, setting: tuple, workers: int | None, done, verbose) -> bool:
    """Write a folder dataset's arrays under its lock (``place``: root, variant, target;
    ``setting``: size, scheme, split seed); ``False`` when another process prepared it
    meanwhile (``done()``). A dataset folder this call created is removed if it fails."""
    root, variant, target = place
    size, scheme, split_seed = setting
    base = root / spec.name
    created = not base.exists()
    try:
        with preparation_lock(root, spec.name, variant):
            if done():
                _say(f"{spec.name}: already prepared at {target} (by another process)", verbose)
                return False
            _write_prepared(spec, listing, target, size, scheme, split_seed, [{"folder": str(spec.source)}],
                            lambda item: spec.load_image(item, size), workers or min(4, max(1, _cpu_count())),
                            verbose)
    except BaseException:
        if created and base.is_dir() and not any(base.iterdir()):
            base.rmdir()
        raise
    return True


def _fractions(fractions, deprecated: dict) -> tuple[float | None, float | None]:
    """``(train, val)`` fractions from ``fractions`` or kml 0.1's ``train_fraction=`` /
    ``val_fraction=`` keywords (with a ``DeprecationWarning``)."""
    import warnings

    unknown = sorted(set(deprecated) - {"train_fraction", "val_fraction"})
    if unknown:
        raise TypeError(f"prepare_folder() got unexpected keyword argument(s) {', '.join(unknown)}")
    if deprecated:
        if fractions is not None:
            raise TypeError("pass the fractions once: fractions=(train, val), not also train_fraction/val_fraction")
        warnings.warn("prepare_folder(train_fraction=..., val_fraction=...) is now fractions=(train, val)",
                      DeprecationWarning, stacklevel=3)
        return deprecated.get("train_fraction"), deprecated.get("val_fraction")
    train, val = fractions if fractions is not None else (None, None)
    return train, val


def check_task_classes(name: str, counts: dict[str, int]) -> None:
    """Whether a folder dataset's splits can form few-shot tasks.

    A train split with a single class is refused (no task of two or more ways can be
    drawn from it). Splits with fewer classes than a default task has ways (5) are named
    in one warning; a split with no classes at all is left out of training and
    evaluation (a folder with only a ``test/`` split is evaluation-only).

    Raises:
        DataError: the train split has exactly one class.
    """
    table = " / ".join(str(counts[split]) for split in SPLITS)
    if counts["train"] == 1:
        raise DataError(
            f"{name} would have a single train class (train / val / test: {table} classes), but a few-shot task "
            "needs at least 2; add class folders (one per class) to the source, or give it more classes for train "
            "(train_fraction=)"
        )
    ways = EPISODE_DEFAULTS.ways
    short = [split for split in SPLITS if counts[split] < ways]
    if short:
        which = short[0] if len(short) == 1 else ", ".join(short[:-1]) + " and " + short[-1]
        logger.warning(
            f"warning: {name}: the {which} split{'s' if len(short) > 1 else ''} "
            f"{'have' if len(short) > 1 else 'has'} fewer than {ways} classes (train / val / test: {table}), "
            f"so {'they' if len(short) > 1 else 'it'} cannot form a {ways}-way task; use episode.ways=<at most "
            "that many> with this dataset, or add class folders"
        )


def _write_prepared(
    spec: DatasetSpec,
    listing: ClassListing,
    target: Path,
    size: int,
    scheme: str,
    split_seed: int,
    sources: list[dict],
    load: Callable[[Any], np.ndarray],
    workers: int,
    verbose: bool,
) -> None:
    total = sum(len(items) for split in SPLITS for _, items in listing.splits[split])
    infos: dict[str, SplitInfo] = {}
    with AtomicDir(target) as tmp, ThreadPoolExecutor(workers) as pool, tqdm(
        total=total, desc=f"prepare {spec.name} ({size}px)", unit="img", disable=not verbose, file=sys.stderr
    ) as bar:
        for split in SPLITS:
            classes = listing.splits[split]
            flat = [item for _, items in classes for item in items]

            def blocks(flat=flat) -> Iterable[np.ndarray]:
                for chunk in _chunks(flat, BLOCK):
                    block = np.stack(list(pool.map(load, chunk)))
                    bar.update(len(chunk))
                    yield block

            _write_split(tmp, split, (len(flat), size, size, spec.channels), blocks())
            infos[split] = SplitInfo([name for name, _ in classes], [len(items) for _, items in classes])
        write_manifest(tmp, _manifest(spec, size, scheme, split_seed, infos, sources, listing.extra))


def _manifest(spec, size, scheme, split_seed, infos, sources, extra) -> Manifest:
    return Manifest(
        dataset=spec.name,
        image_size=size,
        channels=spec.channels,
        split_scheme=scheme,
        split_seed=split_seed,
        splits=infos,
        rotations=spec.rotations,
        sources=sources,
        extra=extra,
        kml_version=_kml_version(),
    )


def _generate(spec: SyntheticSpec, target: Path, size: int, seed: int, workers: int, verbose: bool) -> Path:
    listing = spec.listing(seed)
    listing.check(spec.title)
    count = spec.images_per_class
    infos: dict[str, SplitInfo] = {}
    total = sum(len(classes) for classes in listing.splits.values()) * count

    def render(item: tuple[int, Any]) -> np.ndarray:
        index, params = item
        return spec.render_class(params, spec.class_rng(seed, index), count, size)

    with AtomicDir(target) as tmp, ThreadPoolExecutor(workers) as pool, tqdm(
        total=total, desc=f"generate {spec.name} ({size}px)", unit="img", disable=not verbose, file=sys.stderr
    ) as bar:
        for split in SPLITS:
            classes = listing.splits[split]
            items = [items[0] for _, items in classes]

            def blocks(items=items) -> Iterable[np.ndarray]:
                for chunk in _chunks(items, 8):
                    for images in pool.map(render, chunk):
                        bar.update(len(images))
                        yield images

            _write_split(tmp, split, (len(items) * count, size, size, spec.channels), blocks())
            infos[split] = SplitInfo([name for name, _ in classes], [count] * len(classes))
        sources = [{"generator": spec.name, "seed": seed}]
        write_manifest(tmp, _manifest(spec, size, "seeded", seed, infos, sources, listing.extra))
    _say(f"{spec.name}: generated at {target}", verbose)
    return target


def ensure_prepared(
    name: str, root: str | Path, image_size: int, split: str | None = None, split_seed: int = 0, verbose: bool = True
) -> Path:
    """The prepared folder of ``name``; synthetic modes are generated if missing.

    A real dataset that is not prepared raises :class:`DataError` naming the
    command that prepares it.
    """
    spec = get_spec(name, root)
    size = _check_image_size(image_size)
    scheme = resolve_split(spec, split)
    target = prepared_dir(root, name, spec.variant(size, scheme, split_seed))
    if _matches(read_manifest(target), name, size, scheme, spec.split_seed_for(scheme, split_seed)):
        return target
    if spec.synthetic:
        return prepare_dataset(name, root, size, split=scheme, split_seed=split_seed, verbose=verbose)
    command = prepare_command(name, root, size, scheme, int(split_seed))
    raise NotPreparedError(f"dataset {name!r} is not prepared at {target}; run: {command}", name, command)


def check_root(root: str | Path) -> Path:
    """``data.root`` as a folder (it need not exist yet).

    Raises:
        DataError: ``root`` (or a parent of it) is a file.
    """
    root = Path(root)
    for folder in (root, *root.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "is a file" if folder == root else f"is under {folder}, which is a file"
                raise DataError(
                    f"data.root={root} {where}, not a folder; pass the folder that holds (or will hold) the "
                    "prepared datasets, e.g. data.root=data"
                )
            break
    return root


def prepare_all(
    root: str | Path = "data",
    image_size: int = 84,
    source: str | Path | None = None,
    split_seed: int = 0,
    force: bool = False,
    workers: int | None = None,
    verbose: bool = True,
    include_synthetic: bool = True,
) -> dict[str, Path]:
    """Prepare every dataset found (nothing is downloaded) plus the synthetic modes.

    A real dataset is "found" when its files are in ``source`` (or a direct
    subfolder of it: a folder holding several datasets), or, without ``source``, when
    its official archives are in ``<root>/downloads/<name>/``. Returns the
    prepared folders by name.
    """
    done: dict[str, Path] = {}
    for name, spec in SPECS.items():
        if spec.synthetic:
            if not include_synthetic:
                continue
            done[name] = prepare_dataset(name, root, image_size, split_seed=split_seed, force=force, verbose=verbose)
            continue
        if source not in (None, ""):
            found = find_source(Path(source).expanduser(), spec.markers)
        else:
            folder = downloads_dir(root, name)
            present = spec.remote_files and all((folder / r.filename).is_file() for r in spec.remote_files)
            found = folder if present else None
        if found is None:
            _say(f"{name}: not found, skipped", verbose)
            continue
        done[name] = prepare_dataset(
            name,
            root,
            image_size,
            source=found if source not in (None, "") else None,
            split_seed=split_seed,
            force=force,
            download=False,
            workers=workers,
            verbose=verbose,
        )
    return done


def _cpu_count() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return os.cpu_count() or 1
