"""Benchmarks of meta-training and evaluation speed (``scripts/bench.py``).

Every measurement runs a real training step: a meta-batch is sampled on the
device from uint8 images held in device memory (random pixels: speed does not
depend on content), the learner runs forward and backward, and Adam updates the
meta-parameters. The batched (vectorised) path and the per-task loop path are
timed in the same process, so their ratio is meaningful on any machine.
"""

from __future__ import annotations

import contextlib
import platform
import statistics
import time
from dataclasses import asdict, dataclass, replace

import torch

from kml.engine.builders import autocast_for, restore_determinism, set_determinism
from kml.errors import KmlError
from kml.learners import build_learner, method_name

__all__ = ["BenchCase", "random_sampler", "time_training", "time_evaluation", "markdown_table", "device_name"]


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
    path: str = "batched"  # batched | loop
    backbone: str = "conv4"  # conv4 (32-64-128-256, stride 2) | conv4_classic32 (4x32, max-pool)
    precision: str = "fp32"  # fp32 | bf16 (autocast; parameters stay fp32)
    channels_last: bool = False
    compile: bool = False
    cuda_graph: bool = False  # forward + backward replayed as a CUDA graph (kml.engine.graphs)
    deterministic: bool = False  # torch.use_deterministic_algorithms + cuDNN autotuning off

    @property
    def method(self) -> str:
        return method_name(self.learner, self.modulation)

    def build(self, device: torch.device):
        """The learner of this case: the learner's recipe (as ``learner=...`` on the
        command line), or the classic 4 x 32 max-pool Conv-4 of the peer libraries."""
        if self.backbone == "conv4":
            backbone = {}
        elif self.backbone == "conv4_classic32":
            backbone = dict(channels=(32, 32, 32, 32), style="maxpool", pool="flatten", bn_affine=False)
        else:
            raise ValueError(f"unknown backbone {self.backbone!r}")
        torch.manual_seed(0)
        learner = build_learner(
            self.learner,
            self.modulation,
            ways=self.ways,
            image_size=self.image_size,
            inner_steps=self.inner_steps,
            first_order=self.first_order,
            **backbone,
        )
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
def _determinism(case: BenchCase):
    """The case's algorithm choice (deterministic, or cuDNN autotuning), restored after."""
    previous = set_determinism(case.deterministic)
    try:
        yield
    finally:
        restore_determinism(previous)


def time_training(case: BenchCase, device: torch.device, warmup: int = 2, repeats: int = 5) -> dict:
    """Median time of a full meta-training iteration (sample, forward, backward, Adam step)."""
    with _determinism(case):
        return _time_training(case, device, warmup, repeats)


def _time_training(case: BenchCase, device: torch.device, warmup: int, repeats: int) -> dict:
    learner = case.build(device)
    model = _forward(learner, case)
    sampler = random_sampler(case, device)
    optimizer = torch.optim.Adam(learner.parameters(), lr=1e-3)
    vectorized = case.path == "batched"
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
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
        optimizer.step()
        _sync(device)
        if i >= warmup:
            times.append(time.perf_counter() - start)
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
    }


def time_evaluation(case: BenchCase, device: torch.device, tasks: int = 200, batch_size: int = 20) -> dict:
    """Evaluation throughput (tasks/s) on the sampler's fixed evaluation tasks, task
    generation included: learner in eval mode, no outer gradients."""
    learner = case.build(device).eval()
    model = _forward(learner, case)
    sampler = random_sampler(case, device)
    vectorized = case.path == "batched"

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


def markdown_table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    """A markdown table of ``rows`` with ``columns`` = [(key, header), ...]."""

    def fmt(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
        return str(value)

    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(fmt(row.get(k)) for k, _ in columns) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- suite
METHODS = [("maml", "none"), ("maml", "film"), ("maml", "kml"), ("protonet", "none"), ("protonet", "film"), ("protonet", "kml")]

TRAIN_COLUMNS = [
    ("method", "method"), ("shots", "K"), ("image_size", "size"), ("meta_batch_size", "T"),
    ("inner_steps", "steps"), ("path", "path"), ("ms_per_iteration", "ms/it"), ("tasks_per_s", "tasks/s"),
    ("peak_memory_mb", "peak MiB"), ("speedup", "batched/loop"),
]


_TIMINGS = ("ms_per_iteration", "ms_spread", "tasks_per_s", "peak_memory_mb", "speedup", "graph_speedup", "repeats")


def _pair_speedups(rows: list[dict]) -> None:
    """Add ``speedup`` (loop time / batched time) to batched rows with a loop twin, and
    ``graph_speedup`` (eager time / graphed time) to CUDA-graph rows with an eager twin."""

    def key(r, **changes):
        return tuple((k, v) for k, v in {**r, **changes}.items() if k not in _TIMINGS)

    loops = {key(r, path=None): r for r in rows if r["path"] == "loop"}
    eager = {key(r): r for r in rows if not r.get("cuda_graph")}
    for r in rows:
        twin = loops.get(key(r, path=None)) if r["path"] == "batched" else None
        if twin:
            r["speedup"] = twin["ms_per_iteration"] / r["ms_per_iteration"]
        twin = eager.get(key(r, cuda_graph=False)) if r.get("cuda_graph") else None
        if twin:
            r["graph_speedup"] = twin["ms_per_iteration"] / r["ms_per_iteration"]


def run_suite(
    device: torch.device,
    sections: list[str],
    image_size: int,
    shots: list[int],
    meta_batch_sizes: list[int],
    inner_steps: list[int],
    repeats: int,
    warmup: int,
    eval_tasks: int,
    log=print,
    on_section=None,
) -> dict:
    """Run the benchmark sections; returns ``{section: [rows]}`` plus metadata."""
    from tqdm.auto import tqdm

    out: dict = {"device": device_name(device), "torch": torch.__version__, "sections": {}}
    base = BenchCase(image_size=image_size)
    plans: dict[str, list[tuple[str, BenchCase]]] = {}
    if "paths" in sections:
        plans["paths"] = [("train", replace(base, learner=l, modulation=m, shots=k, path=p))
                          for l, m in METHODS for k in shots for p in ("batched", "loop")]
    if "eval" in sections:
        plans["eval"] = [("eval", replace(base, learner=l, modulation=m, path=p))
                         for l, m in METHODS for p in ("batched", "loop")]
    if "meta_batch" in sections:
        plans["meta_batch"] = [("train", replace(base, modulation="kml", meta_batch_size=t, path=p))
                               for t in meta_batch_sizes for p in ("batched", "loop")]
    if "inner_steps" in sections:
        plans["inner_steps"] = [("train", replace(base, modulation="kml", inner_steps=s, path=p))
                                for s in inner_steps for p in ("batched", "loop")]
    if "peer" in sections:
        peer = BenchCase(backbone="conv4_classic32", meta_batch_size=4, image_size=84)
        plans["peer"] = [("train", replace(peer, path=p)) for p in ("batched", "loop")] + [
            ("train", replace(base, image_size=84, meta_batch_size=4, path=p)) for p in ("batched", "loop")]
    if "paper_cpu" in sections:
        paper = BenchCase(image_size=84, meta_batch_size=10)
        plans["paper_cpu"] = [("train", replace(paper, learner=l, modulation=m, path=p))
                              for l, m in (("maml", "none"), ("maml", "kml"), ("protonet", "kml"))
                              for p in ("batched", "loop")]
    if "options" in sections:
        cases = []
        for l, m in (("maml", "kml"), ("protonet", "kml")):
            plain = replace(base, learner=l, modulation=m, path="batched")
            # the plain case twice, first and last of its group: a slow first case (allocator,
            # clocks) shows as a gap between the two rather than as a fake gain of an option
            cases += [("train", plain), ("train", replace(plain, precision="bf16")),
                      ("train", replace(plain, channels_last=True)), ("train", replace(plain, deterministic=True))]
            if device.type == "cuda":
                cases += [("train", replace(plain, cuda_graph=True)),
                          ("train", replace(plain, cuda_graph=True, precision="bf16")),
                          ("train", replace(plain, path="loop", cuda_graph=True))]
            cases += [("train", plain)]
            if l == "protonet":
                cases += [("train", replace(plain, compile=True)), ("eval", replace(plain, compile=True)),
                          ("eval", plain)]
        first_order = replace(base, modulation="kml", first_order=True, path="batched")
        cases += [("train", first_order), ("train", replace(first_order, compile=True))]
        plans["options"] = cases
    if "cuda_graphs" in sections and device.type == "cuda":
        plans["cuda_graphs"] = [("train", replace(base, learner=l, modulation=m, shots=k, cuda_graph=g))
                                for l, m in METHODS for k in shots for g in (False, True)]
    if "determinism" in sections:
        plans["determinism"] = [("train", replace(base, learner=l, modulation="kml", deterministic=d, cuda_graph=g))
                                for l in ("maml", "protonet") for g in ((False, True) if device.type == "cuda" else (False,))
                                for d in (False, True)]
    if "eval_1000" in sections:
        plans["eval_1000"] = [("eval", replace(base, learner=l, modulation=m, path="batched" if device.type != "cpu" else "loop"))
                              for l, m in (("maml", "kml"), ("protonet", "kml"))]
    plans = {section: plans[section] for section in sections if section in plans}  # run in the order asked
    total = sum(len(p) for p in plans.values())
    bar = tqdm(total=total, desc="bench", unit="case")
    for section, plan in plans.items():
        rows = []
        for kind, case in plan:
            bar.set_postfix_str(f"{section}: {case.method} {case.path} T={case.meta_batch_size}")
            try:
                if kind == "train":
                    rows.append(time_training(case, device, warmup=warmup, repeats=repeats))
                else:
                    n = 1000 if section == "eval_1000" else eval_tasks
                    rows.append(time_evaluation(case, device, tasks=n))
            except Exception as err:  # an option that fails is reported, not fatal
                rows.append({**asdict(case), "method": case.method, "kind": kind, "error": f"{type(err).__name__}: {err}"[:300]})
            bar.update(1)
        if any(r.get("kind") == "train" for r in rows):
            _pair_speedups([r for r in rows if r.get("kind") == "train" and "error" not in r])
        out["sections"][section] = rows
        if on_section is not None:
            on_section(out)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    bar.close()
    return out


def suite_markdown(result: dict) -> str:
    """All sections of :func:`run_suite` as markdown."""
    parts = [f"Device: **{result['device']}**, torch {result['torch']}.", ""]
    for section, rows in result["sections"].items():
        parts.append(f"### {section}")
        train = [r for r in rows if r.get("kind") == "train" and "error" not in r]
        evals = [r for r in rows if r.get("kind") == "eval" and "error" not in r]
        errors = [r for r in rows if "error" in r]
        if train:
            columns = list(TRAIN_COLUMNS)
            if section == "options":
                columns.insert(6, ("precision", "precision"))
                columns.insert(7, ("channels_last", "channels_last"))
                columns.insert(8, ("compile", "compile"))
                columns.insert(9, ("cuda_graph", "CUDA graph"))
                columns.insert(10, ("deterministic", "deterministic"))
                columns.insert(5, ("first_order", "first order"))
            if section == "determinism":
                columns.insert(6, ("cuda_graph", "CUDA graph"))
                columns.insert(7, ("deterministic", "deterministic"))
            if section in ("cuda_graphs", "options", "determinism"):
                columns.append(("graph_speedup", "graph/eager"))
            if section == "cuda_graphs":
                columns.insert(6, ("cuda_graph", "CUDA graph"))
            if section == "peer":
                columns.insert(1, ("backbone", "backbone"))
            parts.append(markdown_table(train, columns))
        if evals:
            parts.append("")
            parts.append(markdown_table(evals, [("method", "method"), ("path", "path"), ("compile", "compile"),
                                                ("eval_tasks", "tasks"), ("eval_seconds", "seconds"),
                                                ("eval_tasks_per_s", "tasks/s")]))
        for r in errors:
            parts.append(f"- {r['method']} ({r['path']}, precision={r['precision']}, compile={r['compile']}): "
                         f"failed: {r['error']}")
        parts.append("")
    return "\n".join(parts)


SECTIONS = ("paths", "cuda_graphs", "determinism", "eval", "meta_batch", "inner_steps", "peer", "paper_cpu", "options", "eval_1000")

PRESETS = {
    "cpu": dict(sections=["paths", "eval", "meta_batch", "inner_steps", "peer", "paper_cpu"], image_size=32,
                shots=[1], meta_batch_sizes=[1, 2, 4, 8], inner_steps=[1, 5], repeats=3, warmup=1, eval_tasks=40),
    "gpu": dict(sections=["paths", "cuda_graphs", "determinism", "eval_1000", "meta_batch", "inner_steps", "peer", "eval", "options"], image_size=84,
                shots=[1, 5], meta_batch_sizes=[1, 2, 4, 8, 16, 32], inner_steps=[1, 2, 5, 10], repeats=10, warmup=3,
                eval_tasks=200),
}


def run_from_config(cfg, log=print) -> dict:
    """``scripts/bench.py``: resolve the preset, run, write JSON + markdown, print the tables."""
    import json
    from pathlib import Path

    from kml.engine.builders import resolve_device
    from kml.io import atomic_write_json, atomic_write_text

    device = resolve_device(cfg.device)
    preset = cfg.preset if cfg.preset != "auto" else ("gpu" if device.type == "cuda" else "cpu")
    unknown = [s for s in (cfg.get("sections") or []) if s not in SECTIONS]
    if unknown:
        raise KmlError(f"sections: {unknown[0]!r} is not a benchmark section; use any of: {', '.join(SECTIONS)}")
    if preset not in PRESETS:
        raise KmlError(f"preset={preset!r} is not valid; use auto, cpu or gpu")
    options = dict(PRESETS[preset])
    for key in options:
        value = cfg.get(key)
        if value is not None:
            options[key] = list(value) if not isinstance(value, (int, float, str)) else value
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    out_dir = Path(cfg.output_dir)
    tag = "cuda" if device.type == "cuda" else "cpu"

    def write(result: dict) -> str:  # after every section: a cut-short run keeps what it measured
        result["preset"] = preset
        markdown = suite_markdown(result)
        atomic_write_json(out_dir / f"bench_{tag}.json", json.loads(json.dumps(result)))
        atomic_write_text(out_dir / f"bench_{tag}.md", markdown + "\n")
        return markdown

    result = run_suite(device, log=log, on_section=write, **options)
    markdown = write(result)
    log(markdown)
    log(f"written to {out_dir / f'bench_{tag}.json'} and {out_dir / f'bench_{tag}.md'}")
    return result
