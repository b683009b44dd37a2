#!/usr/bin/env python
"""Paper-style table of several runs (methods x modes, accuracy +- 95% CI) and each
method's paired difference from a baseline on the identical test tasks.

    python scripts/compare.py run_dirs='[outputs/2026-11-26/*]'
    python scripts/compare.py run_dirs='[runs/maml,runs/mmaml,runs/mmaml_kml]' baseline=MAML output=table.md
"""

from omegaconf import DictConfig

from kml.cli import hydra_main, register_resolvers
from kml.config import CompareScriptConfig, register_script_configs
from kml.analysis.comparison import write_comparison

register_resolvers()
register_script_configs()


@hydra_main(config_name="compare", schema=CompareScriptConfig)
def main(cfg: DictConfig) -> None:
    write_comparison(list(cfg.run_dirs), cfg.output, baseline=cfg.baseline)


if __name__ == "__main__":
    main()
