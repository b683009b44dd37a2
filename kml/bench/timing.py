"""Benchmarks of meta-training and evaluation speed (``scripts/bench.py``).

Every measurement runs a real training step: a meta-batch is sampled on the
device from uint8 images held in device memory (random pixels: speed does not
depend on content), the learner runs forward and backward, and Adam updates the
meta-parameters. The vectorised path and the per-task loop path are
timed in the same process, so their ratio is meaningful on any machine.
"""

from __future__ import annotations

import contextlib
import gc
import platform
import statistics
import time
from dataclasses import asdict, dataclass, replace

import torch

from kml.backbone_spec import BackboneSpec
from kml.engine.numerics import autocast_for, restore_determinism, set_determinism, tf32_matmul
from kml.functional import per_task_conv
from kml.learners import build_learner, get_learner, method_name
from kml.options import option_fields

__all__ = ["BenchCase", "random_sampler", "time_training", "time_evaluation", "device_name", "memory_footprint"]


@dataclass(frozen=True)
class BenchCase:
    """One configuration to time."""

    learner: str = "maml"
    modulation: str = "none"
    ways: int = 5
    shots: int = 1
    queries: int = 15
    meta_batch_size: int = 10
    image_size: int = 84
    inner_steps: int = 5
    first_order: bool = False
    vectorized: bool = True  # tasks as one vectorised computation, or the per-task loop
    # conv4 (32-64-128-256, stride 2) | conv4_classic32 (4x32, max-pool) | resnet12 (64-160-320-640)
    # | a registered backbone at its own widths
    backbone: str = "conv4"
    precision: str = "fp32"  # fp32 | bf16 (autocast; parameters stay fp32)
    channels_last: bool = False
    compile: bool = False
    cuda_graph: bool = False  # forward + backward replayed as a CUDA graph (kml.engine.graphs)
    deterministic: bool = False  # torch.use_deterministic_algorithms + cuDNN autotuning off
    autotune: bool | None = None  # cuDNN autotuning (benchmark mode); None: off when deterministic, else on
    fused_adam: bool = False  # torch.optim.Adam(fused=True) instead of the multi-tensor (foreach) default
    tf32: bool = False  # float32 matmuls on TF32 tensor cores (CUDA)
    per_task_conv: str = "grouped"  # grouped | channels_last | unfold | shared (kml.functional.per_task_conv)
    # ProtoNet under bf16: the logits left to autocast (the behaviour before they were computed in float32),
    # a comparison row only
    bf16_logits: bool = False
    benchmark_limit: int | None = None  # cuDNN algorithms tried by autotuning (0: all; None: PyTorch's default, 10)
    whole_graph: int = 0  # >0: that many whole iterations (sampling, forward, backward, Adam) per CUDA graph

    @property
    def method(self) -> str:
        return method_name(self.learner, self.modulation)

    def build(self, device: torch.device):
        """The learner of this case: the learner's recipe (as ``learner=...`` on the
        command line) on the backbone (at its own widths), or the classic 4 x 32 max-pool
        Conv-4 of the peer libraries."""
        if self.backbone == "conv4_classic32":
            backbone = BackboneSpec(channels=(32, 32, 32, 32), style="maxpool", pool="flatten", bn_affine=False)
        else:
            backbone = BackboneSpec(name=self.backbone)
        learner_class = get_learner(self.learner)
        inner_loop = {"inner_steps": self.inner_steps, "first_order": self.first_order}
        options = {k: v for k, v in inner_loop.items() if k in option_fields(learner_class.Options)}
        torch.manual_seed(0)
        learner = build_learner(self.learner, self.modulation, self.ways, image_size=self.image_size,
                                backbone=backbone, **options)
        if self.bf16_logits:
            from kml.learners.protonet import _expanded_squared_distances

            if not hasattr(learner, "class_logits"):
                raise ValueError(f"bf16_logits is a ProtoNet comparison; {self.method} has no class_logits")
            learner.class_logits = _expanded_squared_distances  # the expansion as autocast leaves it
        return learner.to(device)


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def random_sampler(case: BenchCase, device: torch.device, classes: int = 64, per_class: int = 40):
    """A :class:`kml.data.MixtureSampler` over random uint8 images held on ``device``."""
    from kml.data import MixtureSampler, ModeData

    generator = torch.Generator().manual_seed(0)
    per_class = max(per_class, case.shots + case.queries)
    images = torch.randint(0, 256, (classes * per_class, case.image_size, case.image_size, 3), generator=generator,
                           dtype=torch.uint8)
    mode = ModeData.from_arrays("random", "train", images, [per_class] * classes, device=device)
    return MixtureSampler([mode], case.ways, case.shots, case.queries, seed=0, device=device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _prepare_inputs(batch, case: BenchCase):
    if case.channels_last:
        # channels_last applies to 4-d tensors: the (T*B, C, H, W) view of each set
        def cl(x):
            t, b = x.shape[:2]
            return x.reshape(t * b, *x.shape[2:]).contiguous(memory_format=torch.channels_last).reshape(x.shape)

        return cl(batch.support), cl(batch.query)
    return batch.support, batch.query


def _forward(learner, case: BenchCase):
    if case.compile:
        return torch.compile(learner, dynamic=False)
    return learner


@contextlib.contextmanager
def _numerics(case: BenchCase, device: torch.device):
    """The case's algorithm choices (deterministic algorithms, cuDNN autotuning, TF32
    matmuls, per-task convolution), restored after."""
    previous = set_determinism(case.deterministic)
    limit = torch.backends.cudnn.benchmark_limit
    if case.autotune is not None:
        torch.backends.cudnn.benchmark = case.autotune
    if case.benchmark_limit is not None:
        torch.backends.cudnn.benchmark_limit = case.benchmark_limit
    try:
        with tf32_matmul(case.tf32, device), per_task_conv(case.per_task_conv):
            yield
    finally:
        restore_determinism(previous)
        torch.backends.cudnn.benchmark_limit = limit


def _optimizers(learner, case: BenchCase) -> list[torch.optim.Optimizer]:
    """Adam for the backbone and one for the encoder and generators, as training builds them."""
    from kml.engine.optim import adam_optimizers

    return adam_optimizers(learner, 1e-3, fused=case.fused_adam)


def time_training(case: BenchCase, device: torch.device, warmup: int = 2, repeats: int = 5) -> dict:
    """Median time of a full meta-training iteration (sample, forward, backward, Adam step)."""
    with _numerics(case, device):
        if case.whole_graph:
            return _time_whole_iterations(case, device, warmup, repeats)
        return _time_training(case, device, warmup, repeats)


def _row(case: BenchCase, learner, times: list[float], device: torch.device, repeats: int) -> dict:
    seconds = statistics.median(times)
    return {
        **asdict(case),
        "method": case.method,
        "kind": "train",
        "ms_per_iteration": 1000.0 * seconds,
        "ms_spread": 1000.0 * (max(times) - min(times)),
        "tasks_per_s": case.meta_batch_size / seconds,
        "peak_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None,
        "repeats": repeats,
        "parameters": sum(p.numel() for p in learner.parameters()),
    }


def _time_whole_iterations(case: BenchCase, device: torch.device, warmup: int, repeats: int) -> dict:
    """Per-iteration time of :class:`~kml.bench.whole_iterations.WholeIterations` replays."""
    from kml.bench.whole_iterations import WholeIterations

    if device.type != "cuda":
        raise ValueError("whole-iteration CUDA graphs need a CUDA device")
    if case.precision != "fp32" or case.compile or case.channels_last:
        raise ValueError("whole-iteration CUDA graphs are timed in fp32, without compile or channels_last")
    learner = case.build(device)
    sampler = random_sampler(case, device)
    torch.cuda.reset_peak_memory_stats(device)
    whole = WholeIterations(learner, sampler.modes[0], (case.ways, case.shots, case.queries), case.meta_batch_size,
                            optimizer_kwargs={"fused": True} if case.fused_adam else None,
                            iterations=case.whole_graph, vectorized=case.vectorized, warmup=max(warmup, 1))
    times = []
    replays = max(1, -(-repeats // case.whole_graph))  # at least `repeats` iterations
    for i in range(1 + replays):
        _sync(device)
        start = time.perf_counter()
        whole()
        _sync(device)
        if i:  # the first replay is a warm-up
            times.append((time.perf_counter() - start) / case.whole_graph)
    return _row(case, learner, times, device, replays * case.whole_graph)


def _time_training(case: BenchCase, device: torch.device, warmup: int, repeats: int) -> dict:
    learner = case.build(device)
    model = _forward(learner, case)
    sampler = random_sampler(case, device)
    optimizers = _optimizers(learner, case)
    vectorized = case.vectorized
    graphed = None
    if case.cuda_graph:
        from kml.engine.graphs import GraphedStep

        graphed = GraphedStep(learner, ways=case.ways, vectorized=vectorized, precision=case.precision)
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(warmup + repeats):
        _sync(device)
        start = time.perf_counter()
        batch = sampler.sample(case.meta_batch_size)
        support, query = _prepare_inputs(batch, case)
        if graphed is not None:  # gradients overwritten in place by the replay
            graphed(support, batch.support_labels, query, batch.query_labels)
        else:
            with autocast_for(case.precision, device):
                out = model(support, batch.support_labels, query, batch.query_labels, ways=case.ways,
                            vectorized=vectorized)
            for optimizer in optimizers:
                optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
        for optimizer in optimizers:
            optimizer.step()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return _row(case, learner, times, device, repeats)


def time_evaluation(case: BenchCase, device: torch.device, tasks: int = 200, batch_size: int = 20) -> dict:
    """Evaluation throughput (tasks/s) on the sampler's fixed evaluation tasks, task
    generation included: learner in eval mode, no outer gradients."""
    with _numerics(case, device):
        return _time_evaluation(case, device, tasks, batch_size)


def _time_evaluation(case: BenchCase, device: torch.device, tasks: int, batch_size: int) -> dict:
    learner = case.build(device).eval()
    model = _forward(learner, case)
    sampler = random_sampler(case, device)
    vectorized = case.vectorized

    def run(num_tasks: int) -> None:
        with torch.no_grad(), autocast_for(case.precision, device):
            for batch in sampler.eval_tasks(0, num_tasks, batch_size, seed=1):
                support, query = _prepare_inputs(batch, case)
                model(support, batch.support_labels, query, batch.query_labels, ways=case.ways, vectorized=vectorized)

    run(batch_size)  # warm-up
    _sync(device)
    start = time.perf_counter()
    run(tasks)
    _sync(device)
    seconds = time.perf_counter() - start
    return {
        **asdict(case),
        "method": case.method,
        "kind": "eval",
        "eval_tasks": tasks,
        "eval_seconds": seconds,
        "eval_tasks_per_s": tasks / seconds,
    }




#: messages of a size a kernel cannot handle (a ceiling like running out of memory)
_SIZE_LIMITS = ("out of memory", "CUDNN_STATUS_NOT_SUPPORTED", "CUDNN_STATUS_BAD_PARAM", "32-bit index",
                "canUse32BitIndexMath", "INT_MAX", "too large")


def _fits(case: BenchCase, device: torch.device) -> tuple[bool, float | None, str | None]:
    """One training iteration of ``case``: ``(fits, peak MiB, why not)``."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    try:
        time_training(case, device, warmup=0, repeats=1)
    except (torch.cuda.OutOfMemoryError, RuntimeError) as err:
        message = str(err)
        if not isinstance(err, torch.cuda.OutOfMemoryError) and not any(
                marker in message for marker in _SIZE_LIMITS):
            raise  # a real error, not a ceiling
        gc.collect()
        torch.cuda.empty_cache()
        return False, None, f"{type(err).__name__}: {message.splitlines()[0][:160]}"
    return True, torch.cuda.max_memory_allocated(device) / 2**20, None


def memory_footprint(case: BenchCase, device: torch.device, limit: int = 2048, bisections: int = 3,
                     trial_seconds: float = 20.0) -> dict:
    """Peak device memory of one training iteration at ``case.meta_batch_size`` and the
    largest meta-batch that fits: doubling from it until an iteration fails (out of memory,
    or a kernel refuses the size), up to ``limit`` tasks, then ``bisections`` bisection
    steps between the last size that fit and the first that did not. A trial slower than
    ``trial_seconds`` ends the search (the row says so)."""
    if device.type != "cuda":
        raise ValueError("the memory footprint needs a CUDA device")
    fits, peak, _ = _fits(case, device)
    row = {**asdict(case), "method": case.method, "kind": "memory", "peak_memory_mb": peak,
           "largest_meta_batch": None, "largest_peak_memory_mb": None, "first_failure": None, "search": "complete"}
    if not fits:
        row["search"] = "meta-batch does not fit"
        return row
    good, good_peak, bad = case.meta_batch_size, peak, None
    while bad is None and good < limit:
        size = min(2 * good, limit)
        start = time.perf_counter()
        fits, peak, why = _fits(replace(case, meta_batch_size=size), device)
        if fits:
            good, good_peak = size, peak
        else:
            bad, row["first_failure"] = size, why
        if time.perf_counter() - start > trial_seconds:
            row["search"] = f"stopped: a trial took over {trial_seconds:.0f} s"
            break
    for _ in range(bisections if bad is not None and row["search"] == "complete" else 0):
        if bad - good <= 1:
            break
        size = (good + bad) // 2
        fits, peak, why = _fits(replace(case, meta_batch_size=size), device)
        if fits:
            good, good_peak = size, peak
        else:
            bad = size
    row["largest_meta_batch"], row["largest_peak_memory_mb"] = good, good_peak
    if bad is None and good >= limit:
        row["search"] = f"fits at the limit ({limit})"
    elif bad is not None:
        row["smallest_failing_meta_batch"] = bad
    return row
