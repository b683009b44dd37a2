"""The outer-loop optimisers and learning-rate schedules of a run."""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from kml.learners import MetaLearner

__all__ = ["build_optimizers", "build_schedulers"]


def build_optimizers(learner: MetaLearner, cfg: DictConfig) -> list[torch.optim.Optimizer]:
    """Adam for the backbone and, for modulated learners, a second Adam for the task
    encoder and generators (as in MMAML's code). ``train.fused_adam``: PyTorch's fused
    Adam kernels (one kernel per step instead of a few multi-tensor ones; the same update
    to float rounding) instead of the default multi-tensor (``foreach``) implementation."""
    fused = {"fused": True} if cfg.train.get("fused_adam", False) else {}
    optimizers = [torch.optim.Adam(learner.backbone_parameters(), lr=cfg.train.lr, **fused)]
    modulation_parameters = learner.modulation_parameters()
    if modulation_parameters:
        lr = cfg.train.lr_modulation if cfg.train.lr_modulation is not None else cfg.train.lr
        optimizers.append(torch.optim.Adam(modulation_parameters, lr=lr, **fused))
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
