"""``kml-compare`` (``python scripts/compare.py``): the paper-style table of several runs
(methods x modes, accuracy +- 95% CI) and each method's paired difference from a
baseline on the identical test tasks.

    kml-compare run_dirs='[outputs/2026-11-26/*]'
    kml-compare run_dirs='[runs/maml,runs/mmaml,runs/mmaml_kml]' baseline=MAML output=table.md

Runs of one method with different training seeds are grouped: the tables give the
mean over the seeds +- the t-interval over seeds, with a per-seed table below, and the
paired differences pair the runs of each common seed (see
:mod:`kml.analysis.comparison`). The outputs go to ``output`` (a markdown file; default
``outputs/compare/<YYYY-MM-DD_HH-MM-SS>/comparison.md``), ``<output>.json`` and
``<output stem>_paired.json``.
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
