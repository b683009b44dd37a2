"""The outer-loop optimisers and learning-rate schedules of a run."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from kml.learners import MetaLearner

__all__ = ["build_optimizers", "adam_optimizers", "build_schedulers"]


def build_optimizers(learner: MetaLearner, cfg: DictConfig) -> list[torch.optim.Optimizer]:
    """Adam for the backbone and, for modulated learners, a second Adam for the task
    encoder and generators (as in MMAML's code). ``train.fused_adam``: PyTorch's fused
    Adam kernels (one kernel per step instead of a few multi-tensor ones; the same update
    to float rounding) instead of the default multi-tensor (``foreach``) implementation."""
    return adam_optimizers(learner, cfg.train.lr, cfg.train.lr_modulation, bool(cfg.train.get("fused_adam", False)))


def adam_optimizers(learner: MetaLearner, lr: float, lr_modulation: float | None = None,
                    fused: bool = False) -> list[torch.optim.Optimizer]:
    """The optimisers of :func:`build_optimizers` from plain values (``lr_modulation``:
    the encoder's and generators' learning rate, default ``lr``)."""
    options = {"fused": True} if fused else {}
    optimizers = [torch.optim.Adam(learner.backbone_parameters(), lr=lr, **options)]
    modulation_parameters = learner.modulation_parameters()
    if modulation_parameters:
        rate = lr_modulation if lr_modulation is not None else lr
        optimizers.append(torch.optim.Adam(modulation_parameters, lr=rate, **options))
    return optimizers


def build_schedulers(optimizers: list[torch.optim.Optimizer], cfg: DictConfig) -> list:
    """Step decay (``train.scheduler.step_size`` iterations, factor ``gamma``), or none."""
    step_size = cfg.train.scheduler.step_size
    if not step_size:
        return []
    return [
        torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=cfg.train.scheduler.gamma)
        for opt in optimizers
    ]
