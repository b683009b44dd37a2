"""What a run config builds: the learner (or a Multi-* specialist's), the samplers, and
the record of the data they serve."""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig, OmegaConf

from kml.backbone_spec import BackboneSpec
from kml.config import ConfigError, register_resolvers
from kml.config.imports import import_user_modules
from kml.config.learner import learner_options
from kml.learners import MetaLearner, build_learner
from kml.modulation_spec import ModulationSpec

__all__ = ["build_learner_from_config", "specialist_config", "tasksets_for", "data_provenance_for"]


def specialist_config(cfg: DictConfig, dataset: str) -> DictConfig:
    """The effective config of the Multi-* specialist of ``dataset``.

    Applies ``learner.specialist`` (iterations, meta-batch size, inner lr/steps)
    and its ``per_dataset[dataset]`` entries, as the Multi-MAML baseline of the
    paper does (e.g. Omniglot: inner lr 0.4, 1 step).
    """
    out = copy.deepcopy(cfg)
    spec = cfg.learner.specialist
    with_overrides = {
        "train.iterations": spec.iterations,
        "train.meta_batch_size": spec.meta_batch_size,
        "learner.inner_lr": spec.inner_lr,
        "learner.inner_steps": spec.inner_steps,
    }
    per_dataset = spec.per_dataset.get(dataset, None) if spec.per_dataset else None
    if per_dataset:
        for key, value in per_dataset.items():
            if key not in ("inner_lr", "inner_steps", "iterations", "meta_batch_size"):
                raise ConfigError(
                    f"learner.specialist.per_dataset.{dataset}.{key} is not a known override; "
                    "use inner_lr, inner_steps, iterations or meta_batch_size"
                )
            target = f"learner.{key}" if key.startswith("inner") else f"train.{key}"
            with_overrides[target] = value
    for key, value in with_overrides.items():
        if value is not None:
            OmegaConf.update(out, key, value, merge=False)
    return out


def build_learner_from_config(cfg: DictConfig, dataset: str | None = None) -> MetaLearner:
    """The learner described by ``cfg`` (for a Multi-* specialist: of ``dataset``), after
    importing the modules of its ``imports``: its modulation and backbone specs and its own
    options, each read from the config by its declaration."""
    register_resolvers()
    import_user_modules(cfg.get("imports"))
    if dataset is not None:
        cfg = specialist_config(cfg, dataset)
    return build_learner(
        cfg.learner.name,
        ModulationSpec.from_config(cfg.modulation),
        ways=int(cfg.episode.ways),
        image_size=int(cfg.data.image_size),
        backbone=BackboneSpec.from_config(cfg.learner.backbone),
        **learner_options(cfg.learner),
    )


def tasksets_for(cfg: DictConfig, device: torch.device | str, seed: int | None = None):
    """The run's train/val/test samplers (``kml.data.get_tasksets``) from its config."""
    from kml.data import DataOptions, get_tasksets

    datasets = list(cfg.mode.datasets)
    return get_tasksets(
        datasets if len(datasets) > 1 else datasets[0],
        ways=cfg.episode.ways,
        shots=cfg.episode.shots,
        queries=cfg.episode.queries,
        root=cfg.data.root,
        image_size=cfg.data.image_size,
        device=device,
        seed=cfg.train.seed if seed is None else seed,
        options=DataOptions(replacement=cfg.data.replacement, split_schemes=_split_schemes(cfg),
                            split_seed=int(cfg.data.get("split_seed", 0))),
    )


def _split_schemes(cfg: DictConfig) -> dict[str, str]:
    return {k: v for k, v in (cfg.data.get("splits") or {}).items() if v}


def data_provenance_for(cfg: DictConfig) -> dict[str, dict]:
    """What data a run of ``cfg`` sees (:func:`kml.data.provenance.data_provenance`): its
    mode's datasets at its image size, split schemes and split seed."""
    from kml.data.provenance import data_provenance

    return data_provenance(list(cfg.mode.datasets), cfg.data.root, int(cfg.data.image_size),
                           split_schemes=_split_schemes(cfg), split_seed=int(cfg.data.get("split_seed", 0)))

