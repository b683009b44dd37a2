"""Where and how a run computes: the device, the vectorised-or-loop rule, CUDA graphs."""

from __future__ import annotations

import torch

from kml.errors import KmlError

__all__ = ["resolve_device", "use_vectorized", "use_cuda_graphs", "CPU_BATCHED_MAX_IMAGE_SIZE"]


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


#: on CPU the vectorised path wins on small images and the per-task loop on large ones
#: (docs/performance.md: 32x32 vectorised 1.47-1.61x faster; 84x84 loop as fast or up to 25% faster)
CPU_BATCHED_MAX_IMAGE_SIZE = 48


def use_vectorized(setting: str | bool, device: torch.device, image_size: int = 84) -> bool:
    """``train.vectorized``: ``auto`` picks the vectorised path on GPU, and on CPU the vectorised
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
