#!/usr/bin/env python
"""Paper-style table of several runs: methods x (modes, overall), accuracy +- 95% CI.

    python scripts/compare.py run_dirs='[outputs/2026-11-26/*]'
    python scripts/compare.py run_dirs='[runs/maml,runs/mmaml,runs/mmaml_kml]' output=table.md
"""

from omegaconf import DictConfig

from kml.cli import hydra_main, register_resolvers
from kml.config import CompareScriptConfig, register_script_configs
from kml.engine.reporting import write_comparison

register_resolvers()
register_script_configs()


@hydra_main(config_name="compare", schema=CompareScriptConfig)
def main(cfg: DictConfig) -> None:
    write_comparison(list(cfg.run_dirs), cfg.output)


if __name__ == "__main__":
    main()
