"""The schema of ``scripts/prepare_data.py`` (``configs/prepare_data.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kml.data.errors import DataError


@dataclass
class DataPathsConfig:
    """Where prepared datasets live (``data.root``, shared with training configs)."""

    root: str = "data"


@dataclass
class PrepareDataConfig:
    """``python scripts/prepare_data.py dataset=<name> [source=<archive or folder>] ...``.

    Attributes:
        dataset: a dataset name, a synthetic mode, or ``all`` (every dataset
            found in ``source`` / the downloads folder, plus the synthetic modes).
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
    """

    dataset: str = MISSING
    source: Optional[str] = None
    data: DataPathsConfig = field(default_factory=DataPathsConfig)
    image_size: int = 84
    split: Optional[str] = None
    split_seed: int = 0
    force: bool = False
    download: bool = True
    workers: int = 0
    verbose: bool = True


def resolve_prepare_config(cfg: Any) -> PrepareDataConfig:
    """Validate a composed config against :class:`PrepareDataConfig` (DataError on bad values)."""
    try:
        schema = OmegaConf.structured(PrepareDataConfig)
        merged = OmegaConf.merge(schema, cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg))
        if OmegaConf.is_missing(merged, "dataset"):
            raise DataError("no dataset given; run: python scripts/prepare_data.py dataset=<name> (or dataset=all)")
        return OmegaConf.to_object(merged)  # type: ignore[return-value]
    except OmegaConfBaseException as error:
        message = str(error).splitlines()[0]
        raise DataError(f"invalid prepare_data config: {message}; see configs/prepare_data.yaml") from None
