#!/usr/bin/env python
"""Evaluate a saved run on its fixed, seeded evaluation tasks (default 1000 per mode).

    python scripts/eval.py run_dir=outputs/2026-11-26/10-00-00_5mode_maml-kml
    python scripts/eval.py run_dir=... checkpoint=20000 eval.tasks_per_mode=600
"""

from omegaconf import DictConfig

from kml.cli import hydra_main, register_resolvers
from kml.config import EvalScriptConfig, register_script_configs
from kml.engine.runs import evaluate_run
from kml.errors import KmlError

register_resolvers()
register_script_configs()


@hydra_main(config_name="eval", schema=EvalScriptConfig)
def main(cfg: DictConfig) -> None:
    if not cfg.run_dir:
        raise KmlError("run_dir is required: python scripts/eval.py run_dir=<a run directory of scripts/train.py>")
    evaluate_run(
        cfg.run_dir,
        checkpoint=cfg.checkpoint,
        tasks_per_mode=cfg.eval.tasks_per_mode,
        split=cfg.eval.split,
        batch_size=cfg.eval.batch_size,
        device=cfg.device,
        progress=cfg.progress,
        output=cfg.output,
    )


if __name__ == "__main__":
    main()
