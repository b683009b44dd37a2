"""``kml-eval`` (``python scripts/eval.py``): evaluate a saved run on fixed, seeded tasks.

    kml-eval run_dir=outputs/2026-11-26/10-00-00_5mode_maml-kml
    kml-eval run_dir=... checkpoint=best eval.tasks_per_mode=600
    kml-eval run_dir=... 'mode.datasets=[gtsrb]' data.root=/data    # a mode it was not trained on
    kml-eval run_dir=... episode.shots=5                             # 5-way 5-shot tasks
"""

from __future__ import annotations

from omegaconf import DictConfig

from kml.cli import hydra_main
from kml.commands import command
from kml.config import EvalScriptConfig
from kml.errors import KmlError

__all__ = ["main"]


@hydra_main(config_name="eval", schema=EvalScriptConfig)
def main(cfg: DictConfig) -> None:
    from kml.data import tune_cpu_allocator
    from kml.engine.runs import EvalOptions, evaluate_run

    if not cfg.run_dir:
        raise KmlError(f"run_dir is required: {command('eval')} run_dir=<a run directory of {command('train')}>")
    tune_cpu_allocator()
    options = EvalOptions(
        tasks_per_mode=cfg.eval.tasks_per_mode,
        split=cfg.eval.split,
        batch_size=cfg.eval.batch_size,
        datasets=list(cfg.mode.datasets) if cfg.mode.datasets else None,
        mode_name=cfg.mode.name,
        data_root=cfg.data.root,
        ways=cfg.episode.ways,
        shots=cfg.episode.shots,
        queries=cfg.episode.queries,
    )
    evaluate_run(cfg.run_dir, checkpoint=cfg.checkpoint, options=options, device=cfg.device, progress=cfg.progress,
                 output=cfg.output)
