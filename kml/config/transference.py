"""The schema of ``kml-transference`` / ``scripts/transference.py`` (``configs/transference.yaml``).

:func:`validate_transference_config` adds the range checks and raises
:class:`~kml.config.ConfigError` naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from kml.commands import command
from kml.config.checks import ConfigError, at_least, choice

__all__ = [
    "TransferenceScriptConfig",
    "validate_transference_config",
    "SPLITS",
]

SPLITS = ("train", "val", "test")


@dataclass
class TransferenceScriptConfig:
    """``kml-transference``: LR_{i->j} histograms of saved runs.

    The protocol is the paper's: 300 meta-train tasks of one mode as sources, one
    (seeded) meta-test task of another mode as the target, at several checkpoints.

    Two settings are **our choices**, not the paper's (it states neither):

    - ``alpha = 0.025``, the size of the source step. |LR - 1| grows with alpha; with
      the outer learning rate (1e-3) nearly every LR stays within 0.01 of 1 (all
      "neutral"), 0.01 still leaves a quarter neutral and 0.05 sends LR up to 2.7 with
      90% negative, while 0.025 gives an LR range and a neutral share close to the
      paper's figure (about 0.85-1.3, 4-10% neutral); docs/transference.md has the
      measurement. ``alpha=null`` uses the run's ``train.lr``.
    - ``neutral = 0.01``: ``|LR - 1| <= 0.01`` counts as neutral transfer.
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
    alpha: Optional[float] = 0.025  # source step size (our choice, see above); null: the run's train.lr
    neutral: float = 0.01  # |LR - 1| <= neutral is neutral transfer (our choice, see above)
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


def validate_transference_config(cfg: DictConfig | TransferenceScriptConfig) -> None:
    """Range and consistency checks.

    Raises:
        ConfigError: naming the offending key and the allowed values.
    """
    c = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
    if not c.run_dirs:
        raise ConfigError(
            f"run_dirs is empty: pass one or more run directories of {command('train')} (globs allowed), "
            "e.g. run_dirs='[outputs/2026-11-26/*]'"
        )
    for key in ("source_split", "target_split"):
        choice(c[key], SPLITS, key)
    choice(c.inner_steps, ("train", "eval"), "inner_steps")
    for key in ("sources", "targets", "matrix_sources", "matrix_targets", "bins"):
        at_least(c[key], 1, key)
    for key in ("neutral", "chunk_size"):
        at_least(c[key], 0, key)
    at_least(c.alpha, 0, "alpha")
    if any(i < 0 for i in c.checkpoints):
        raise ConfigError(f"checkpoints={list(c.checkpoints)} must be iteration numbers >= 0 (empty: all saved)")
