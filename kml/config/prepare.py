"""The schema of ``kml-prepare`` / ``scripts/prepare_data.py`` (``configs/prepare_data.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kml.commands import command as kml_command
from kml.errors import DataError


@dataclass
class DataPathsConfig:
    """Where prepared datasets live (``data.root``, shared with training configs)."""

    root: str = "data"


@dataclass
class PrepareDataConfig:
    """``python scripts/prepare_data.py dataset=<name> [source=<archive or folder>] ...``.

    Attributes:
        dataset: a dataset name, a synthetic mode, ``all`` (every dataset
            found in ``source`` / the downloads folder, plus the synthetic modes),
            ``folder`` (a folder of your own images, with ``source`` and ``name``),
            or the name of a folder dataset already prepared in ``data.root``
            (prepared again from its recorded source).
        source: local archive or folder to read instead of downloading.
        data: ``data.root``, the folder of prepared datasets.
        image_size: side of the stored square images.
        split: split scheme (None: the dataset's default; ``lake`` for
            Omniglot, ``test_only`` for GTSRB, ...).
        split_seed: seed of seeded class splits and synthetic generation.
        force: prepare again even if already prepared.
        download: download official archives when no source is given.
        workers: decoding threads (0: automatic).
        verbose: progress bar and messages.
        name: ``dataset=folder``: the name to prepare the folder under.
        layout: ``dataset=folder``: ``auto``, ``classes`` (``<source>/<class>/*``)
            or ``splits`` (``<source>/{train,val,test}/<class>/*``).
        train_fraction, val_fraction: ``dataset=folder``, ``classes`` layout: the
            share of the classes in train and val (None: 0.7 and 0.15); test gets
            the rest.
    """

    dataset: str = MISSING  # a dataset, a synthetic mode, synthetic, all, folder, or a prepared folder dataset
    source: Optional[str] = None  # local archive or folder; null downloads the official archive (checksum-verified)
    data: DataPathsConfig = field(default_factory=DataPathsConfig)  # prepared arrays go to <root>/<dataset>/<variant>/
    image_size: int = 84
    split: Optional[str] = None  # null: the dataset's default; omniglot: vinyals | lake; gtsrb: seeded | test_only
    split_seed: int = 0
    force: bool = False  # prepare again even if already prepared
    download: bool = True
    workers: int = 0  # decoding threads, 0 = automatic
    verbose: bool = True
    # dataset=folder only
    name: Optional[str] = None  # the name to use it under: mode.datasets=[omniglot,<name>]
    layout: str = "auto"  # auto | classes (<source>/<class>/*) | splits (<source>/{train,val,test}/<class>/*)
    train_fraction: Optional[float] = None  # classes layout: share of the classes in train (null = 0.7)
    val_fraction: Optional[float] = None  # classes layout: share in val (null = 0.15); test gets the rest


#: the options that only go with ``dataset=folder``
FOLDER_OPTIONS = ("name", "train_fraction", "val_fraction")


def check_folder_options(cfg: PrepareDataConfig) -> None:
    """``dataset=folder`` has a source and a name and no split; the folder options go with
    ``dataset=folder`` only (DataError naming the fix otherwise)."""
    command = f"{kml_command('prepare')} dataset=folder source=<folder> name=<name>"
    if cfg.dataset == "folder":
        missing = [option for option in ("source", "name") if getattr(cfg, option) in (None, "")]
        if missing:
            raise DataError(
                f"dataset=folder needs {' and '.join(missing)}=; run: {command} "
                "(source: your images, one folder per class)"
            )
        if cfg.split not in (None, ""):
            raise DataError(
                f"split={cfg.split} does not apply to dataset=folder (its splits come from its layout); leave it out"
            )
        return
    given = [option for option in FOLDER_OPTIONS if getattr(cfg, option) is not None]
    if cfg.layout != "auto":
        given.append("layout")
    if given:
        raise DataError(
            f"{given[0]}= only goes with dataset=folder (a folder of your own images: {command}); "
            f"leave it out for dataset={cfg.dataset}"
        )


def resolve_prepare_config(cfg: Any) -> PrepareDataConfig:
    """Validate a composed config against :class:`PrepareDataConfig` (DataError on bad values)."""
    try:
        schema = OmegaConf.structured(PrepareDataConfig)
        merged = OmegaConf.merge(schema, cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg))
        if OmegaConf.is_missing(merged, "dataset"):
            raise DataError(f"no dataset given; run: {kml_command('prepare')} dataset=<name> (or dataset=all)")
        resolved: PrepareDataConfig = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as error:
        message = str(error).splitlines()[0]
        raise DataError(f"invalid prepare_data config: {message}; see configs/prepare_data.yaml") from None
    check_folder_options(resolved)
    return resolved
