"""``kml-compare`` (``python scripts/compare.py``): the paper-style table of several runs
(methods x modes, accuracy +- 95% CI) and each method's paired difference from a
baseline on the identical test tasks.

    kml-compare run_dirs='[outputs/2026-11-26/*]'
    kml-compare run_dirs='[runs/maml,runs/mmaml,runs/mmaml_kml]' baseline=MAML output=table.md
"""

from __future__ import annotations

from omegaconf import DictConfig

from kml.cli import hydra_main
from kml.config import CompareScriptConfig

__all__ = ["main"]


@hydra_main(config_name="compare", schema=CompareScriptConfig)
def main(cfg: DictConfig) -> None:
    from kml.analysis.comparison import write_comparison

    write_comparison(list(cfg.run_dirs), cfg.output, baseline=cfg.baseline)
