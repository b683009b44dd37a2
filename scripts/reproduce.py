#!/usr/bin/env python
"""Run a campaign of experiments, keep its records and write the results report.

    python scripts/reproduce.py campaign=synthetic                    # run (or continue) it
    python scripts/reproduce.py campaign=5mode_dev_protonet dry_run=true   # plan + estimated time
    python scripts/reproduce.py campaign=5mode_dev_protonet max_runs=1     # one run, then stop
    python scripts/reproduce.py campaign=5mode_dev_protonet report_only=true   # docs/results.md from results/
"""

from omegaconf import DictConfig

from kml.campaign import run_campaign
from kml.cli import hydra_main, register_resolvers
from kml.config import ReproduceScriptConfig, register_configs, register_reproduce_config

register_resolvers()
register_configs()
register_reproduce_config()


@hydra_main(config_name="reproduce", schema=ReproduceScriptConfig)
def main(cfg: DictConfig) -> None:
    run_campaign(cfg)


if __name__ == "__main__":
    main()
