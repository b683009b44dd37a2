#!/usr/bin/env python
"""Meta-train and evaluate any method on any mixture.

    python scripts/train.py                                    # embedded default (MProtoNet+KML, synthetic)
    python scripts/train.py mode=5mode learner=maml modulation=kml
    python scripts/train.py mode=2mode learner=maml modulation=none multi=true   # Multi-MAML
    python scripts/train.py -m learner=maml,protonet modulation=none,film,kml    # sweep
    python scripts/train.py resume=outputs/2026-11-26/10-00-00_...               # continue a run
    torchrun --nproc_per_node=2 scripts/train.py ...                            # tasks sharded over ranks
"""

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from kml.cli import hydra_main, register_resolvers, terminate_as_interrupt
from kml.config import RunConfig, register_configs
from kml.engine.runs import run_training

register_resolvers()
register_configs()


@hydra_main(config_name="config", schema=RunConfig)
def main(cfg: DictConfig) -> None:
    terminate_as_interrupt()
    hydra_cfg = HydraConfig.get()
    overrides = OmegaConf.to_container(hydra_cfg.overrides.task, resolve=False)
    run_training(cfg, hydra_cfg.runtime.output_dir, overrides=overrides)


if __name__ == "__main__":
    main()
