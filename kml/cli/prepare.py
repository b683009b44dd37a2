"""``kml-prepare`` (``python scripts/prepare_data.py``): download (or read) and preprocess a
dataset once into uint8 arrays (see ``docs/data.md``).

    kml-prepare dataset=omniglot
    kml-prepare dataset=miniimagenet source=/downloads/mini-imagenet image_size=84
    kml-prepare dataset=all source=/downloads
    kml-prepare dataset=folder source=/my/images name=mydata          # a folder of your own images
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from kml.cli import hydra_main
from kml.config import PrepareDataConfig

__all__ = ["main", "run"]


def run(raw: DictConfig) -> dict[str, Path]:
    """Prepare what ``raw`` (a composed ``prepare_data`` config) names; ``{dataset: folder}``."""
    from kml.config import resolve_prepare_config
    from kml.data import SYNTHETIC_MIXTURE, prepare_all, prepare_dataset, prepare_folder

    cfg = resolve_prepare_config(raw)
    common = dict(image_size=cfg.image_size, split_seed=cfg.split_seed, force=cfg.force, verbose=cfg.verbose)
    workers = cfg.workers or None
    if cfg.dataset == "folder":
        folder = prepare_folder(
            cfg.source,
            cfg.name,
            cfg.data.root,
            fractions=(cfg.train_fraction, cfg.val_fraction),
            layout=cfg.layout,
            workers=workers,
            **common,
        )
        return {cfg.name: folder}
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
