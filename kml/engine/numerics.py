"""Numerical settings of a run: autocast precision and deterministic algorithms."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["autocast_for", "set_determinism", "restore_determinism"]


def autocast_for(precision: str, device: torch.device, cache_enabled: bool = True):
    """The autocast context of ``train.precision`` (``bf16``) or a no-op (``fp32``).

    Parameters, optimiser state and MAML's inner updates stay float32: autocast
    only lowers the precision of matrix products and convolutions. CUDA graph
    capture needs ``cache_enabled=False``.
    """
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
