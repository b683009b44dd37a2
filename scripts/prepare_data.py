"""Prepare datasets: ``python scripts/prepare_data.py dataset=<name> [source=<path>] [image_size=84]``.

Thin entry point; the work is :func:`kml.data.prepare_dataset` /
:func:`kml.data.prepare_all`. See ``docs/data.md``.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from kml.cli import hydra_main
from kml.data import SYNTHETIC_MIXTURE, prepare_all, prepare_dataset
from kml.data.prepare_config import PrepareDataConfig, resolve_prepare_config


def run(raw: DictConfig) -> dict[str, Path]:
    cfg = resolve_prepare_config(raw)
    common = dict(image_size=cfg.image_size, split_seed=cfg.split_seed, force=cfg.force, verbose=cfg.verbose)
    workers = cfg.workers or None
    if cfg.dataset == "all":
        return prepare_all(cfg.data.root, source=cfg.source, workers=workers, **common)
    names = SYNTHETIC_MIXTURE if cfg.dataset == "synthetic" else (cfg.dataset,)
    return {
        name: prepare_dataset(
            name, cfg.data.root, source=cfg.source, split=cfg.split, download=cfg.download, workers=workers, **common
        )
        for name in names
    }


@hydra_main(config_name="prepare_data", schema=PrepareDataConfig)
def main(raw: DictConfig) -> None:
    for name, folder in run(raw).items():
        print(f"{name}: {folder}")


if __name__ == "__main__":
    main()
