"""``kml-train`` (``python scripts/train.py``): meta-train and evaluate any method on any mixture.

    kml-train                                    # embedded default (MProtoNet+KML, synthetic)
    kml-train mode=5mode learner=maml modulation=kml
    kml-train mode=2mode learner=maml modulation=none multi=true   # Multi-MAML
    kml-train -m learner=maml,protonet modulation=none,film,kml    # sweep
    kml-train resume=outputs/2026-11-26/10-00-00_...               # continue a run
    kml-train resume=auto hydra.run.dir=runs/a                     # start, or continue runs/a
    kml-train logger=[tensorboard,wandb]                           # metric loggers
    kml-train -m hydra/sweeper=optuna eval.val_every=500 'train.lr=interval(1e-4,1e-2)'
    torchrun --nproc_per_node=2 scripts/train.py ...               # tasks sharded over ranks

It returns the val accuracy (%) of the tested weights (``None`` without validation): the
objective Hydra's sweepers (Optuna) maximise.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from kml.cli import hydra_main, terminate_as_interrupt
from kml.commands import command
from kml.config import RunConfig
from kml.errors import KmlError

__all__ = ["main", "check_launch"]

#: parts of a run directory that change with every start (Hydra's default directories)
_CHANGING = ("${now:", "kml_unique")


def check_launch(cfg: DictConfig, hydra_cfg) -> None:
    """The checks that need Hydra's own settings (``HydraConfig.get()``).

    Raises:
        KmlError: ``resume=auto`` with a run directory that changes from one start to the
            next (Hydra's default, which holds the time), or a sweeper that optimises the
            returned objective while validation is off (it would tune on nothing, and
            never on test accuracy).
    """
    from hydra.types import RunMode

    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    if cfg.resume == "auto":
        key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
        raw = OmegaConf.to_container(hydra_cfg.sweep if multirun else hydra_cfg.run, resolve=False)["dir"]
        if any(part in str(raw) for part in _CHANGING):
            raise KmlError(
                f"resume=auto continues the run found in its run directory, but {key} is not set and the default "
                f"changes with every start (it holds the time); pass {key}=<a folder>, the same on every start"
            )
    sweeper = hydra_cfg.runtime.choices.get("hydra/sweeper") if multirun else None
    if sweeper not in (None, "basic") and not int(cfg.eval.val_every):
        raise KmlError(
            f"hydra/sweeper={sweeper} tunes on what {command('train')} returns, the final validation accuracy, "
            "but validation is off; set eval.val_every=<iterations> (e.g. eval.val_every=500): tuning on test accuracy "
            "is not allowed"
        )


@hydra_main(config_name="config", schema=RunConfig)
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from kml.data import tune_cpu_allocator
    from kml.engine.runs import run_training

    hydra_cfg = HydraConfig.get()
    check_launch(cfg, hydra_cfg)
    terminate_as_interrupt()
    tune_cpu_allocator()
    overrides = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)
    results = run_training(cfg, hydra_cfg.runtime.output_dir, overrides=overrides)
    return results["val_accuracy"]
