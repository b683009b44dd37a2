"""Numerical settings of a run: autocast precision, TF32 matrix products and deterministic algorithms."""

from __future__ import annotations

import contextlib

import torch

__all__ = ["autocast_for", "set_determinism", "restore_determinism", "tf32_matmul", "tf32_settings"]


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


def _matmul_precision() -> str:
    """``highest`` or ``high``/``tf32``, read through whichever API this process uses
    (PyTorch refuses to read the legacy one after the new one was set, and the reverse)."""
    try:
        return torch.get_float32_matmul_precision()
    except RuntimeError:
        return str(torch.backends.cuda.matmul.fp32_precision)


def _set_matmul_precision(value: str) -> None:
    """Set the precision read by :func:`_matmul_precision` through the same API."""
    try:
        torch.get_float32_matmul_precision()
    except RuntimeError:
        torch.backends.cuda.matmul.fp32_precision = {"high": "tf32", "highest": "ieee"}.get(value, value)
    else:
        torch.set_float32_matmul_precision({"tf32": "high", "ieee": "highest"}.get(value, value))


@contextlib.contextmanager
def tf32_matmul(enabled: bool, device: torch.device):
    """``train.tf32``: float32 matrix products (``torch.matmul``, ``nn.Linear``, ``bmm``) on
    a CUDA device may use TF32 tensor cores within this context. cuDNN convolutions allow
    TF32 by default in PyTorch whatever this says (``torch.backends.cudnn.allow_tf32``). No
    effect on other devices."""
    if not enabled or device.type != "cuda":
        yield
        return
    previous = _matmul_precision()
    _set_matmul_precision("high")
    try:
        yield
    finally:
        _set_matmul_precision(previous)


def tf32_settings() -> dict[str, object]:
    """The TF32 settings in force: matmul precision and cuDNN's TF32 switch."""
    try:
        cudnn = bool(torch.backends.cudnn.allow_tf32)
    except RuntimeError:
        cudnn = str(torch.backends.cudnn.conv.fp32_precision)
    return {"float32_matmul_precision": _matmul_precision(), "cudnn_allow_tf32": cudnn}
