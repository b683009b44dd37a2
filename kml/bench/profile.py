"""Where the time of a meta-training iteration goes on a GPU (``scripts/bench.py
sections=[profile]``).

One eager and one CUDA-graphed iteration of a :class:`~kml.bench.timing.BenchCase` run
under ``torch.profiler``; the trace's GPU kernels are

- grouped into **kernel classes** by name (convolutions, batch norm, matrix products,
  element-wise, reductions, indexing, optimiser, copies), and
- for an eager iteration, attributed to the **phase** of the iteration that launched
  them (sampling, the task encoder and generators, the inner loop's forward and its
  ``autograd.grad``, the outer forward, the outer backward, the optimiser steps), by
  the host time of the launch. A graph replay is one launch, so graphed kernels get
  classes only.

Kernels are also sorted by the units they run on, from their names: cuDNN's legacy
single-precision grouped convolution kernels and float32 GEMMs run on the CUDA cores,
kernels whose names mark TF32, bf16 or fp16 tensor-core instructions on the tensor cores.

Beside the kernel times it counts the iteration's floating-point work
(``torch.utils.flop_counter``) and turns it into time floors: all of it at the device's
dense TF32 tensor-core peak (the lowest), all of it at the float32 CUDA-core peak, and an
estimate between the two that charges the share of kernel time spent in CUDA-core kernels
to the CUDA cores (the FLOP counter does not see kernels, so the time shares stand in for
FLOP shares). It also records the bytes the iteration allocates on the device: not memory
traffic (a buffer can be read and written many times, or allocated and barely touched),
so not a floor; ``memory_floor_ms`` is that figure at the memory bandwidth.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict

import torch

from kml.bench.timing import BenchCase, _numerics, _optimizers, _sync, random_sampler
from kml.engine.numerics import tf32_settings

__all__ = ["KERNEL_CLASSES", "PHASES", "DEVICE_PEAKS", "kernel_class", "kernel_units", "analyse_trace",
           "count_flops", "profile_training"]

#: kernel classes, tested in this order on the lower-cased kernel name (first match wins)
KERNEL_CLASSES = (
    ("batch norm", ("batch_norm", "batchnorm", "bn_fw", "bn_bw", "welford")),  # before cuDNN's convolutions
    ("convolution", ("conv", "fprop", "dgrad", "wgrad", "implicit_gemm", "cudnn", "winograd", "im2col", "col2im")),
    ("optimiser", ("multi_tensor_apply", "adam", "fused_optimizer", "_foreach")),
    ("matrix product", ("gemm", "gemv", "cutlass", "cublas", "matmul", "splitk", "dot_kernel")),
    ("reduction", ("reduce", "softmax", "norm_kernel", "cross_entropy", "nll_loss")),
    ("indexing / sampling", ("index", "gather", "scatter", "sort", "topk", "radix", "philox", "random", "uniform",
                             "bitonic", "rot90")),
    ("copy / fill", ("copy", "memcpy", "memset", "fill", "cat_", "catarray")),
    ("element-wise", ("elementwise", "vectorized", "unrolled", "pointwise", "clamp", "mul", "add", "where",
                      "threshold", "leaky")),
)

#: phases of an eager iteration, in the order they run (see :func:`profile_training`)
PHASES = ("sampling", "encoder + generators", "inner-loop forward", "inner-loop autograd", "outer forward",
          "outer backward", "optimiser")

#: peak dense TF32 tensor-core rate and float32 CUDA-core rate (FLOP/s), and memory
#: bandwidth (bytes/s), by device name (the vendors' figures for the SXM parts)
DEVICE_PEAKS = {
    "H200": {"tf32_flops": 494.7e12, "fp32_flops": 66.9e12, "bandwidth": 4.8e12},
    "H100": {"tf32_flops": 494.7e12, "fp32_flops": 66.9e12, "bandwidth": 3.35e12},
    "A100": {"tf32_flops": 156e12, "fp32_flops": 19.5e12, "bandwidth": 2.0e12},
}

#: cuDNN's legacy single-precision grouped convolution kernels (CUDA cores)
LEGACY_FP32_CONV = ("dgrad_engine", "implicit_convolve_sgemm", "wgrad_alg0_engine", "wgrad_alg1_engine",
                    "dgrad2d_alg1")
#: name fragments of kernels that use tensor-core instructions (TF32, bf16, fp16)
TENSOR_CORE = ("tf32", "bf16", "f16", "hmma", "gmma", "tensorop", "16816", "1688", "s884", "h884")


def kernel_units(name: str) -> str:
    """``"tensor cores"``, ``"CUDA cores"`` (cuDNN's legacy fp32 grouped convolutions, and
    GEMMs and implicit-GEMM convolutions without a tensor-core marker) or ``"other"``
    (element-wise, reductions, copies, layout transforms: little arithmetic), from a
    kernel's name."""
    lowered = name.lower()
    if any(p in lowered for p in TENSOR_CORE):
        return "tensor cores"
    if any(p in lowered for p in LEGACY_FP32_CONV) or "gemm" in lowered:
        return "CUDA cores"
    return "other"


def kernel_class(name: str) -> str:
    """The class of a GPU kernel from its name (``"other"`` when none matches)."""
    lowered = name.lower()
    for label, patterns in KERNEL_CLASSES:
        if any(p in lowered for p in patterns):
            return label
    return "other"


def analyse_trace(trace: dict, top: int = 12) -> dict:
    """Kernel times of a Chrome trace (``torch.profiler`` export) by kernel, class and phase.

    Phases are the ``user_annotation`` ranges named in :data:`PHASES`: a kernel belongs to
    the innermost such range whose host interval holds the runtime call that launched it
    (matched by correlation id). Returns ``{"kernel_ms", "kernels", "top", "classes",
    "phases", "phase_classes"}``; times in ms, shares of the total kernel time.
    """
    events = trace.get("traceEvents", trace if isinstance(trace, list) else [])
    kernels = [e for e in events if e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset") and "dur" in e]
    launches = {}
    for e in events:
        if e.get("cat") in ("cuda_runtime", "cuda_driver") and "correlation" in e.get("args", {}):
            launches[e["args"]["correlation"]] = e["ts"]
    ranges = sorted(((e["ts"], e["ts"] + e["dur"], e["name"]) for e in events
                     if e.get("cat") == "user_annotation" and e.get("name") in PHASES and "dur" in e),
                    key=lambda r: r[1] - r[0])  # innermost (shortest) first
    total = sum(e["dur"] for e in kernels) / 1000.0
    by_name: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    by_class: dict[str, float] = defaultdict(float)
    by_phase: dict[str, float] = defaultdict(float)
    phase_class: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for e in kernels:
        ms = e["dur"] / 1000.0
        label = kernel_class(e["name"]) if e.get("cat") == "kernel" else "copy / fill"
        by_name[e["name"]][0] += 1
        by_name[e["name"]][1] += ms
        by_class[label] += ms
        launched = launches.get(e.get("args", {}).get("correlation"))
        phase = "unattributed"
        if launched is not None and ranges:
            phase = next((name for start, end, name in ranges if start <= launched <= end), "unattributed")
        by_phase[phase] += ms
        phase_class[phase][label] += ms

    def share(ms: float) -> float:
        return ms / total if total else 0.0

    ordered = sorted(by_name.items(), key=lambda kv: -kv[1][1])
    by_units: dict[str, float] = defaultdict(float)
    legacy = 0.0
    for name, (_, ms) in by_name.items():
        by_units[kernel_units(name)] += ms
        legacy += ms if any(p in name.lower() for p in LEGACY_FP32_CONV) else 0.0
    return {
        "kernel_ms": total,
        "kernels": sum(calls for calls, _ in by_name.values()),
        "top": [{"kernel": name[:110], "class": kernel_class(name), "units": kernel_units(name), "calls": calls,
                 "ms": ms, "share": share(ms)}
                for name, (calls, ms) in ordered[:top]],
        "units": {label: {"ms": by_units[label], "share": share(by_units[label])}
                  for label in ("tensor cores", "CUDA cores", "other")},
        "legacy_fp32_conv_share": share(legacy),
        "all_kernels": [{"kernel": name[:200], "calls": calls, "ms": ms} for name, (calls, ms) in ordered],
        "classes": {label: {"ms": ms, "share": share(ms)}
                    for label, ms in sorted(by_class.items(), key=lambda kv: -kv[1])},
        "phases": {p: {"ms": by_phase[p], "share": share(by_phase[p])}
                   for p in (*PHASES, "unattributed") if by_phase.get(p)},
        "phase_classes": {p: dict(c) for p, c in phase_class.items()},
    }


@contextlib.contextmanager
def _annotated_phases(learner):
    """Mark the phases of an iteration with ``record_function`` ranges: the learner's
    ``modulate`` (encoder + generators), MAML's ``adapt`` (inner loop), and every
    ``torch.autograd.grad`` inside it (inner-loop autograd). Undone on exit."""
    from torch.profiler import record_function

    def wrap(fn, name):
        def wrapped(*args, **kwargs):
            with record_function(name):
                return fn(*args, **kwargs)

        return wrapped

    patched = []
    for attr, name in (("modulate", "encoder + generators"), ("adapt", "inner-loop forward")):
        if hasattr(learner, attr):
            setattr(learner, attr, wrap(getattr(learner, attr), name))
            patched.append(attr)
    grad = torch.autograd.grad
    torch.autograd.grad = wrap(grad, "inner-loop autograd")
    try:
        yield
    finally:
        torch.autograd.grad = grad
        for attr in patched:
            delattr(learner, attr)


def _convolution_backward_flops(grad_out_shape, x_shape, w_shape, _bias, stride, padding, dilation, transposed,
                                output_padding, groups, output_mask, out_shape=None, **kwargs) -> int:
    """FLOPs of ``aten.convolution_backward``: each requested gradient (input, weight) costs
    what the forward convolution costs. ``torch.utils.flop_counter``'s own formula counts a
    grouped convolution's weight gradient ``groups`` times too high."""
    from math import prod

    forward = 2 * prod(w_shape) * grad_out_shape[0] * prod(grad_out_shape[2:])  # (C_out, C_in/groups, k, k)
    if transposed:
        forward = 2 * prod(w_shape) * x_shape[0] * prod(x_shape[2:])
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(learner, batch, ways: int, vectorized: bool = True) -> float:
    """Floating-point operations of one forward + backward of ``learner`` on ``batch``
    (convolutions and matrix products, as ``torch.utils.flop_counter`` counts them, with
    a grouped convolution's weight gradient counted per group)."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False,
                              custom_mapping={torch.ops.aten.convolution_backward: _convolution_backward_flops})
    with counter:
        out = learner(batch.support, batch.support_labels, batch.query, batch.query_labels, ways=ways,
                      vectorized=vectorized)
        out.loss.backward()
    learner.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def _iteration(case: BenchCase, learner, sampler, optimizers, graphed):
    """One meta-training iteration of ``case`` as a function of ``annotate`` (profiler
    phases: sampling, outer forward and backward, optimiser)."""
    from torch.profiler import record_function

    def iteration(annotate: bool) -> None:
        phase = record_function if annotate else (lambda name: contextlib.nullcontext())
        with phase("sampling"):
            batch = sampler.sample(case.meta_batch_size)
        tasks = (batch.support, batch.support_labels, batch.query, batch.query_labels)
        if graphed is not None:
            graphed(*tasks)
        else:
            with phase("outer forward"):
                out = learner(*tasks, ways=case.ways, vectorized=case.vectorized)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            with phase("outer backward"):
                out.loss.backward()
        with phase("optimiser"):
            for optimizer in optimizers:
                optimizer.step()

    return iteration


def _wall_and_allocated(iteration, device: torch.device, warmup: int) -> tuple[float, int]:
    """After ``warmup`` iterations: one iteration's wall time (ms) and the bytes another one allocates."""
    for _ in range(warmup):
        iteration(False)
    _sync(device)
    start = time.perf_counter()
    iteration(False)
    _sync(device)
    wall_ms = 1000.0 * (time.perf_counter() - start)
    allocated = torch.cuda.memory_stats(device).get("allocated_bytes.all.allocated", 0)
    iteration(False)
    _sync(device)
    return wall_ms, torch.cuda.memory_stats(device).get("allocated_bytes.all.allocated", 0) - allocated


def _traced(iteration, learner, eager: bool, device: torch.device, top: int) -> dict:
    """The kernels of one profiled iteration (:func:`analyse_trace`)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with _annotated_phases(learner) if eager else contextlib.nullcontext():
            iteration(True)
        _sync(device)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            return analyse_trace(json.load(f), top=top)


def _add_floors(row: dict, flops: float | None, allocated: int, peaks: dict | None) -> None:
    """The compute floors (at the tensor-core peak, the CUDA-core peak, and the estimate
    between them from the kernel-time shares) and the allocation time at peak bandwidth."""
    if peaks is None:
        return
    if flops is not None:
        row["compute_floor_ms"] = 1000.0 * flops / peaks["tf32_flops"]
        row["compute_floor_cuda_cores_ms"] = 1000.0 * flops / peaks["fp32_flops"]
        f = row["units"]["CUDA cores"]["share"]  # its share of the kernel time, for its share of the FLOPs
        row["compute_floor_estimate_ms"] = 1000.0 * flops * (f / peaks["fp32_flops"] + (1 - f) / peaks["tf32_flops"])
    row["memory_floor_ms"] = 1000.0 * allocated / peaks["bandwidth"]


def profile_training(case: BenchCase, device: torch.device, warmup: int = 3, top: int = 12) -> dict:
    """Profile one meta-training iteration of ``case`` (eager, or CUDA-graphed when
    ``case.cuda_graph``) on a CUDA ``device``: see the module's docstring."""
    if device.type != "cuda":
        raise ValueError("the profile needs a CUDA device (it reads the GPU kernels' times)")
    with _numerics(case, device):
        learner = case.build(device)
        sampler = random_sampler(case, device)
        graphed = None
        if case.cuda_graph:
            from kml.engine.graphs import GraphedStep

            graphed = GraphedStep(learner, ways=case.ways, vectorized=case.vectorized, precision=case.precision)
        iteration = _iteration(case, learner, sampler, _optimizers(learner, case), graphed)
        wall_ms, allocated = _wall_and_allocated(iteration, device, warmup)
        analysis = _traced(iteration, learner, graphed is None, device, top)
        flops = (count_flops(learner, sampler.sample(case.meta_batch_size), case.ways, case.vectorized)
                 if graphed is None else None)
    row = {**asdict(case), "method": case.method, "kind": "profile", "wall_ms": wall_ms,
           "gpu_busy": analysis["kernel_ms"] / wall_ms if wall_ms else None, "allocated_mb": allocated / 2**20,
           "tf32": tf32_settings(), **analysis}
    if flops is not None:
        row["gflop"] = flops / 1e9
        row["achieved_tflops"] = flops / (wall_ms / 1000.0) / 1e12
    for kernel in row["top"]:  # one call per task and layer shows as a multiple of T
        kernel["calls_per_task"] = kernel["calls"] / case.meta_batch_size
        kernel["multiple_of_tasks"] = kernel["calls"] % case.meta_batch_size == 0
    _add_floors(row, flops, allocated, next((v for k, v in DEVICE_PEAKS.items()
                                             if k in torch.cuda.get_device_name(device)), None))
    return row
