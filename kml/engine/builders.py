"""Build learners, optimisers and samplers from a run config."""

from __future__ import annotations

import copy

import torch
from omegaconf import DictConfig, OmegaConf

from kml.errors import KmlError
from kml.learners import MetaLearner, build_learner

__all__ = [
    "build_learner_from_config",
    "specialist_config",
    "build_optimizers",
    "build_schedulers",
    "tasksets_for",
    "resolve_device",
    "use_vectorized",
    "use_cuda_graphs",
    "autocast_for",
    "set_determinism",
    "restore_determinism",
]


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
                raise KmlError(
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
    """The learner described by ``cfg`` (for a Multi-* specialist: of ``dataset``)."""
    if dataset is not None:
        cfg = specialist_config(cfg, dataset)
    backbone = cfg.learner.backbone
    modulation = cfg.modulation
    return build_learner(
        cfg.learner.name,
        modulation.name,
        ways=cfg.episode.ways,
        in_channels=3,
        image_size=cfg.data.image_size,
        channels=list(backbone.channels),
        style=backbone.style,
        bn_affine=backbone.bn_affine,
        pool=backbone.pool,
        task_dim=modulation.task_dim,
        encoder_channels=list(modulation.encoder_channels) if modulation.encoder_channels else None,
        hidden=list(modulation.hidden),
        rank=modulation.rank,
        factorization=modulation.factorization,
        identity=modulation.identity,
        inner_steps=cfg.learner.inner_steps,
        inner_lr=cfg.learner.inner_lr,
        first_order=cfg.learner.first_order,
        grad_clip=cfg.learner.grad_clip,
        eval_inner_steps=cfg.learner.eval_inner_steps,
    )


def build_optimizers(learner: MetaLearner, cfg: DictConfig) -> list[torch.optim.Optimizer]:
    """Adam for the backbone and, for modulated learners, a second Adam for the task
    encoder and generators (as in MMAML's code)."""
    optimizers = [torch.optim.Adam(learner.backbone_parameters(), lr=cfg.train.lr)]
    modulation_parameters = learner.modulation_parameters()
    if modulation_parameters:
        lr = cfg.train.lr_modulation if cfg.train.lr_modulation is not None else cfg.train.lr
        optimizers.append(torch.optim.Adam(modulation_parameters, lr=lr))
    return optimizers


def build_schedulers(optimizers: list[torch.optim.Optimizer], cfg: DictConfig) -> list:
    """Step decay (``train.scheduler.step_size`` iterations, factor ``gamma``), or none."""
    step_size = cfg.train.scheduler.step_size
    if not step_size:
        return []
    return [torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=cfg.train.scheduler.gamma) for opt in optimizers]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available else CPU; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise KmlError(f"device={name!r} is not a valid device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise KmlError(f"device={name} was requested but no CUDA GPU is available; use device=cpu (or device=auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise KmlError(
                f"device={name} does not exist: this machine has {torch.cuda.device_count()} GPU(s); "
                f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}"
            )
    return device


#: on CPU the batched path wins on small images and the per-task loop on large ones
#: (docs/performance.md: 32x32 batched 1.47-1.61x faster; 84x84 loop as fast or up to 25% faster)
CPU_BATCHED_MAX_IMAGE_SIZE = 48


def use_vectorized(setting: str | bool, device: torch.device, image_size: int = 84) -> bool:
    """``train.vectorized``: ``auto`` picks the batched path on GPU, and on CPU the batched
    path for images up to ``CPU_BATCHED_MAX_IMAGE_SIZE`` pixels and the per-task loop
    above, whichever measured faster. A fixed rule, not a timing at run time, so that
    two runs with the same config take the same path (bit-identical results)."""
    value = str(setting).lower()
    if value == "auto":
        return device.type != "cpu" or image_size <= CPU_BATCHED_MAX_IMAGE_SIZE
    return value == "true"


def use_cuda_graphs(setting: str | bool, device: torch.device, distributed: bool = False) -> bool:
    """``train.cuda_graphs``: ``auto`` replays each meta-iteration's forward and backward
    as a CUDA graph on a single GPU (docs/performance.md: 1.1-2.4x faster per iteration
    on an H200, where kernel launches bound an eager meta-iteration, with the same
    results), and never on CPU or across processes; ``true`` forces it
    (multi-process included), ``false`` runs eagerly."""
    value = str(setting).lower()
    if value == "auto":
        return device.type == "cuda" and not distributed
    if value == "true" and device.type != "cuda":
        raise KmlError(
            f"train.cuda_graphs=true needs a CUDA device, but this run is on {device}; "
            "use train.cuda_graphs=auto (or false) or device=cuda"
        )
    return value == "true"


def tasksets_for(cfg: DictConfig, device: torch.device | str, seed: int | None = None):
    """The run's train/val/test samplers (``kml.data.get_tasksets``) from its config."""
    from kml.data import get_tasksets

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
        replacement=cfg.data.replacement,
    )


def autocast_for(precision: str, device: torch.device, cache_enabled: bool = True):
    """The autocast context of ``train.precision`` (``bf16``) or a no-op (``fp32``).

    Parameters, optimiser state and MAML's inner updates stay float32: autocast
    only lowers the precision of matrix products and convolutions. CUDA graph
    capture needs ``cache_enabled=False``.
    """
    import contextlib

    if precision == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache_enabled)
    return contextlib.nullcontext()


def set_determinism(deterministic: bool) -> tuple[bool, bool, bool]:
    """``train.deterministic``: deterministic algorithms (warnings only where an op has
    none) and cuDNN autotuning off, or autotuning on. Returns the previous
    ``(deterministic, warn_only, cudnn_benchmark)`` for :func:`restore_determinism`."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
                torch.backends.cudnn.benchmark)
    torch.use_deterministic_algorithms(bool(deterministic), warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic
    return previous


def restore_determinism(previous: tuple[bool, bool, bool]) -> None:
    """Undo :func:`set_determinism`."""
    torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
    torch.backends.cudnn.benchmark = previous[2]
