#!/usr/bin/env python
"""Paper-style table of several runs: methods x (modes, overall), accuracy +- 95% CI.

    python scripts/compare.py run_dirs='[outputs/2026-11-26/*]'
    python scripts/compare.py run_dirs='[runs/maml,runs/mmaml,runs/mmaml_kml]' output=table.md
"""

import hydra
from omegaconf import DictConfig

from kml.cli import CONFIG_DIR, main_guard, register_resolvers
from kml.config import register_script_configs
from kml.engine.reporting import write_comparison

register_resolvers()
register_script_configs()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="compare")
@main_guard
def main(cfg: DictConfig) -> None:
    write_comparison(list(cfg.run_dirs), cfg.output)


if __name__ == "__main__":
    main()
