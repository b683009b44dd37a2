"""``kml-reproduce`` (``python scripts/reproduce.py``): run a campaign of experiments, keep
its records in ``results/`` and write the results report (``docs/results.md``).

    kml-reproduce campaign=synthetic                         # run (or continue) it
    kml-reproduce campaign=5mode_dev_protonet dry_run=true   # the plan and an estimated time
    kml-reproduce campaign=5mode_dev_protonet max_runs=1     # one run, then stop
    kml-reproduce campaign=2mode_protonet_84 'only_methods=[ProtoNet]'     # one method's runs
    kml-reproduce campaign=5mode_dev_protonet report_only=true   # the report from results/ alone
    kml-reproduce campaign=2mode_maml_84 launcher=submitit_slurm \
        "launcher_overrides=['hydra.launcher.partition=gpu','hydra.launcher.timeout_min=600']"
                                                # each missing run as a SLURM job, recorded when they end
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from kml.cli import hydra_main, terminate_as_interrupt
from kml.config import ReproduceScriptConfig
from kml.errors import KmlError

__all__ = ["main"]


@hydra_main(config_name="reproduce", schema=ReproduceScriptConfig)
def main(cfg: DictConfig) -> None:
    from kml.campaign import run_campaign
    from kml.config.compose import group_options
    from kml.data import tune_cpu_allocator

    if OmegaConf.is_missing(cfg.campaign, "name"):  # no campaign=<name> (the group is optional for --help)
        raise KmlError(f"campaign is required: pass campaign=<name>; available: {', '.join(group_options('campaign'))}")
    terminate_as_interrupt()
    tune_cpu_allocator()
    run_campaign(cfg)
