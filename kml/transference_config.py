"""Structured configuration of ``scripts/transference.py`` (the schema behind
``configs/transference.yaml``).

:class:`TransferenceScriptConfig` is registered with Hydra's ConfigStore as
``transference_schema``, so an unknown key or a value of the wrong type is
rejected when the config is composed; :func:`validate_transference_config`
adds the range checks and raises :class:`kml.errors.KmlError` naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from kml.errors import KmlError

__all__ = [
    "TransferenceScriptConfig",
    "register_transference_config",
    "validate_transference_config",
    "SPLITS",
]

SPLITS = ("train", "val", "test")


@dataclass
class TransferenceScriptConfig:
    """``scripts/transference.py``: LR_{i->j} histograms of saved runs.

    Defaults follow the paper's protocol: 300 meta-train tasks of one mode as
    sources, one (seeded) meta-test task of another mode as the target, every
    saved checkpoint, a neutral band of 0.01, and ``alpha`` = the run's outer
    learning rate (``train.lr``).
    """

    run_dirs: list[str] = field(default_factory=list)  # run directories or globs
    labels: list[str] = field(default_factory=list)  # legend labels, one per run (default: method names)
    checkpoints: list[int] = field(default_factory=list)  # iterations; empty: every saved iter_*.pt
    source_mode: Optional[str] = None  # default: the run's first mode
    source_split: str = "train"
    target_mode: Optional[str] = None  # default: the run's second mode (the first if it has one)
    target_split: str = "test"
    sources: int = 300
    targets: int = 1
    alpha: Optional[float] = None  # step size; default: the run's train.lr
    neutral: float = 0.01  # |LR - 1| <= neutral counts as neutral transfer
    seed: int = 0  # which source / target tasks (the same for every run with the same data)
    inner_steps: str = "train"  # MAML: train (learner.inner_steps) | eval (learner.eval_inner_steps)
    matrix: bool = False  # also the mode-to-mode matrix (every mode as source and as target)
    matrix_sources: int = 50  # sources per mode for the matrix
    matrix_targets: int = 2  # targets per mode for the matrix
    chunk_size: int = 0  # sources per batched computation; 0: from a memory budget (~512 MB)
    vectorized: bool = True  # false: the per-source loop reference
    float64: bool = False  # compute in double precision (slower; for very small alpha)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    data_root: Optional[str] = None  # default: the run's data.root
    bins: int = 40
    output_dir: Optional[str] = None  # default: <run_dir>/transference (one run) or ./transference
    progress: bool = True


def register_transference_config() -> None:
    """Register :class:`TransferenceScriptConfig` as ``transference_schema``."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="transference_schema", node=TransferenceScriptConfig)


def validate_transference_config(cfg: DictConfig | TransferenceScriptConfig) -> None:
    """Range and consistency checks.

    Raises:
        KmlError: naming the offending key and the allowed values.
    """
    c = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    if not c.run_dirs:
        raise KmlError(
            "run_dirs is empty: pass one or more run directories of scripts/train.py (globs allowed), "
            "e.g. run_dirs='[outputs/2026-11-26/*]'"
        )
    for key in ("source_split", "target_split"):
        if c[key] not in SPLITS:
            raise KmlError(f"{key}={c[key]!r} is not valid; use one of: {', '.join(SPLITS)}")
    if c.inner_steps not in ("train", "eval"):
        raise KmlError(f"inner_steps={c.inner_steps!r} is not valid; use train or eval")
    for key in ("sources", "targets", "matrix_sources", "matrix_targets", "bins"):
        if c[key] < 1:
            raise KmlError(f"{key}={c[key]} is out of range: it must be >= 1")
    for key in ("neutral", "chunk_size"):
        if c[key] < 0:
            raise KmlError(f"{key}={c[key]} is out of range: it must be >= 0")
    if c.alpha is not None and c.alpha < 0:
        raise KmlError(f"alpha={c.alpha} is out of range: it must be >= 0 (or null for the run's train.lr)")
    if any(i < 0 for i in c.checkpoints):
        raise KmlError(f"checkpoints={list(c.checkpoints)} must be iteration numbers >= 0 (empty: all saved)")
