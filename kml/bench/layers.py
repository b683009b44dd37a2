"""One kernel-modulated convolution layer alone, timed under each per-task formulation
(``scripts/bench.py sections=[conv_layers]``).

The layers are a Conv-4's four (``3 -> 32 -> 64 -> 128 -> 256``, 3x3, stride 2, padding
1) at the benchmark's image size, each a :class:`~kml.modulation.KernelModulatedConv2d`
with KML's default generator (channel factors, rank 1, ``J + M``) whose weight is shared
by the tasks, as in the ProtoNet family. ``T`` tasks of ``ways * (shots + queries)``
images each (80 at 5-way 1-shot 15 queries) run forward and backward together: the
generator, the per-task convolution and the gradients of the input (from the second
layer on, as inside a network), the weight and the generator. The formulations of a layer
shape and precision take turns within each repeat of one process, so their ratios hold on
any machine.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict

import torch

from kml.bench.timing import BenchCase, _sync
from kml.engine.numerics import autocast_for
from kml.functional import per_task_conv, tasks_to_grouped
from kml.modulation import KernelModulatedConv2d
from kml.recipes import PER_TASK_CONVS

__all__ = ["conv4_layer_shapes", "time_conv_layer"]

#: the task embedding's size of the timed layers (the library's default)
TASK_DIM = 128


def conv4_layer_shapes(image_size: int, channels=(32, 64, 128, 256), in_channels: int = 3) -> list[dict]:
    """``in_channels``, ``out_channels`` and input ``size`` of a strided Conv-4's layers."""
    shapes, size, width = [], image_size, in_channels
    for out in channels:
        shapes.append({"in_channels": width, "out_channels": out, "size": size})
        size, width = (size - 1) // 2 + 1, out
    return shapes


def time_conv_layer(case: BenchCase, shape: dict, device: torch.device, warmup: int = 2, repeats: int = 5,
                    formulations: tuple[str, ...] = PER_TASK_CONVS) -> list[dict]:
    """Median time of one forward + backward of a kernel-modulated layer of ``shape`` over
    ``case.meta_batch_size`` tasks of ``ways * (shots + queries)`` images in
    ``case.precision``, for each per-task convolution of ``formulations``: one row each.

    The formulations take turns within every repeat (the same layer, inputs and output
    gradient), so a machine that slows down or speeds up during the measurement moves them
    alike and their ratios stay fair."""
    unknown = [f for f in formulations if f not in PER_TASK_CONVS]
    if unknown:
        raise ValueError(f"per-task convolution {unknown[0]!r} is not one of {', '.join(PER_TASK_CONVS)}")
    tasks, images = case.meta_batch_size, case.ways * (case.shots + case.queries)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    layer = KernelModulatedConv2d(shape["in_channels"], shape["out_channels"], 3, task_dim=TASK_DIM, stride=2,
                                  padding=1).to(device)
    x = torch.randn(tasks, images, shape["in_channels"], shape["size"], shape["size"], generator=generator)
    x = tasks_to_grouped(x).to(device).requires_grad_(shape["in_channels"] != 3)  # images need no gradient
    embedding = torch.randn(tasks, TASK_DIM, generator=generator).to(device)
    grads: list[torch.Tensor] = []

    def step(formulation: str) -> float:
        _sync(device)
        start = time.perf_counter()
        with per_task_conv(formulation), autocast_for(case.precision, device):
            y = layer.forward_grouped(x, tasks, layer.modulation(embedding))
        if not grads:
            grads.append(torch.randn(y.shape, generator=generator).to(device, y.dtype))
        y.backward(grads[0])
        _sync(device)
        layer.zero_grad(set_to_none=True)
        x.grad = None
        return time.perf_counter() - start

    times: dict[str, list[float]] = {f: [] for f in formulations}
    for i in range(warmup + repeats):
        for formulation in formulations:
            seconds = step(formulation)
            if i >= warmup:
                times[formulation].append(seconds)
    out_size = (shape["size"] - 1) // 2 + 1
    return [{
        **asdict(case),
        "method": "KML layer",
        "kind": "layer",
        "per_task_conv": formulation,
        **shape,
        "out_size": out_size,
        "images_per_task": images,
        "ms_forward_backward": 1000.0 * statistics.median(spent),
        "ms_spread": 1000.0 * (max(spent) - min(spent)),
        "repeats": repeats,
    } for formulation, spent in times.items()]
