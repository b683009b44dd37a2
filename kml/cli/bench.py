"""``kml-bench`` (``python scripts/bench.py``): speed of meta-training and evaluation:
vectorised tasks vs the per-task loop, scaling with meta-batch size and inner steps,
speed options (bf16, channels_last, torch.compile, CUDA graphs).

    kml-bench                                # CPU preset: a few minutes
    kml-bench device=cuda                    # GPU preset: paper settings (84x84)
    kml-bench sections=[paths] image_size=84 shots=[1,5]
"""

from __future__ import annotations

from omegaconf import DictConfig

from kml.cli import hydra_main
from kml.config import BenchScriptConfig

__all__ = ["main"]


@hydra_main(config_name="bench", schema=BenchScriptConfig)
def main(cfg: DictConfig) -> None:
    from kml.bench import run_from_config
    from kml.data import tune_cpu_allocator

    tune_cpu_allocator()
    run_from_config(cfg)
