#!/usr/bin/env python
"""Benchmark meta-training and evaluation: batched vs per-task loop paths, scaling with
meta-batch size and inner steps, speed options (bf16, channels_last, torch.compile).

    python scripts/bench.py                        # CPU preset: a few minutes
    python scripts/bench.py device=cuda            # GPU preset: paper settings (84x84)
    python scripts/bench.py sections=[paths] image_size=84 shots=[1,5]
"""

from omegaconf import DictConfig

from kml.bench import run_from_config
from kml.cli import hydra_main, register_resolvers
from kml.config import BenchScriptConfig, register_bench_config

register_resolvers()
register_bench_config()


@hydra_main(config_name="bench", schema=BenchScriptConfig)
def main(cfg: DictConfig) -> None:
    run_from_config(cfg)


if __name__ == "__main__":
    main()
