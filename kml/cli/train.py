"""``kml-train`` (``python scripts/train.py``): meta-train and evaluate any method on any mixture.

    kml-train                                    # embedded default (MProtoNet+KML, synthetic)
    kml-train mode=5mode learner=maml modulation=kml
    kml-train mode=2mode learner=maml modulation=none multi=true   # Multi-MAML
    kml-train -m learner=maml,protonet modulation=none,film,kml    # sweep
    kml-train resume=outputs/2026-11-26/10-00-00_...               # continue a run
    torchrun --nproc_per_node=2 scripts/train.py ...               # tasks sharded over ranks
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from kml.cli import hydra_main, terminate_as_interrupt
from kml.config import RunConfig

__all__ = ["main"]


@hydra_main(config_name="config", schema=RunConfig)
def main(cfg: DictConfig) -> None:
    from hydra.core.hydra_config import HydraConfig

    from kml.data import tune_cpu_allocator
    from kml.engine.runs import run_training

    terminate_as_interrupt()
    tune_cpu_allocator()
    hydra_cfg = HydraConfig.get()
    overrides = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)
    run_training(cfg, hydra_cfg.runtime.output_dir, overrides=overrides)
