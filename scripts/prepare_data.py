"""Prepare datasets: ``python scripts/prepare_data.py dataset=<name> [source=<path>] [image_size=84]``.

Thin entry point; the work is :func:`kml.data.prepare_dataset` /
:func:`kml.data.prepare_all`. See ``docs/data.md``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kml.data import SYNTHETIC_MIXTURE, prepare_all, prepare_dataset  # noqa: E402
from kml.data.prepare_config import resolve_prepare_config  # noqa: E402
from kml.errors import KmlError  # noqa: E402


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


@hydra.main(version_base="1.3", config_path="../configs", config_name="prepare_data")
def main(raw: DictConfig) -> None:
    try:
        done = run(raw)
    except KmlError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    for name, folder in done.items():
        print(f"{name}: {folder}")


if __name__ == "__main__":
    main()
