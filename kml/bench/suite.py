"""The benchmark suite (``kml-bench``): sections of timed cases, speed ratios measured in
the same process, and the JSON + markdown report."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch

from kml.bench.timing import BenchCase, device_name, memory_footprint, time_evaluation, time_training
from kml.errors import KmlError

logger = logging.getLogger(__name__)

# METHODS: module __getattr__, read from the registries
__all__ = ["markdown_table", "run_suite", "SuiteSettings", "suite_markdown", "run_from_config",  # noqa: F822
           "methods", "fastest_candidates", "SECTIONS", "PRESETS", "METHODS"]


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
def methods() -> list[tuple[str, str]]:
    """``(learner, modulation)`` of every registered learner and modulation: the six
    methods of the paper, and those of any learner or modulation registered since."""
    from kml.learners import list_learners
    from kml.modulation import list_modulations

    return [(learner, modulation) for learner in list_learners() for modulation in list_modulations()]


def __getattr__(name: str) -> Any:
    if name == "METHODS":  # the registered methods, at the time of access
        return methods()
    raise AttributeError(f"module 'kml.bench.suite' has no attribute {name!r}")


TRAIN_COLUMNS = [
    ("method", "method"), ("shots", "K"), ("image_size", "size"), ("meta_batch_size", "T"),
    ("inner_steps", "steps"), ("vectorized", "vectorized"), ("ms_per_iteration", "ms/it"), ("tasks_per_s", "tasks/s"),
    ("peak_memory_mb", "peak MiB"), ("speedup", "vectorised/loop"),
]

#: the meta-batch of the ResNet-12 section (every registered method at ResNet-12's own
#: widths 64-160-320-640 and the preset's image size) on a CPU and on a GPU
RESNET12_META_BATCH = {"cpu": 2, "gpu": 10}


_TIMINGS = ("ms_per_iteration", "ms_spread", "tasks_per_s", "peak_memory_mb", "speedup", "graph_speedup", "repeats")


def _pair_speedups(rows: list[dict]) -> None:
    """Add ``speedup`` (loop time / vectorised time) to vectorised rows with a loop twin, and
    ``graph_speedup`` (eager time / graphed time) to CUDA-graph rows with an eager twin."""

    def key(r, **changes):
        return tuple((k, v) for k, v in {**r, **changes}.items() if k not in _TIMINGS)

    loops = {key(r, vectorized=None): r for r in rows if not r["vectorized"]}
    eager = {key(r): r for r in rows if not r.get("cuda_graph")}
    for r in rows:
        twin = loops.get(key(r, vectorized=None)) if r["vectorized"] else None
        if twin:
            r["speedup"] = twin["ms_per_iteration"] / r["ms_per_iteration"]
        twin = eager.get(key(r, cuda_graph=False)) if r.get("cuda_graph") else None
        if twin:
            r["graph_speedup"] = twin["ms_per_iteration"] / r["ms_per_iteration"]


def _timed_in_child(case: BenchCase, device: str, warmup: int, repeats: int, queue) -> None:
    try:
        queue.put(time_training(case, torch.device(device), warmup=warmup, repeats=repeats))
    except Exception as err:  # reported in the row, as in the parent
        queue.put({"error": f"{type(err).__name__}: {err}"[:300]})


def _in_fresh_process(case: BenchCase, device: torch.device, warmup: int, repeats: int) -> dict:
    """:func:`time_training` in a new process. PyTorch caches cuDNN's choice of algorithm per
    process, keyed by shapes and flags but not by the autotuning settings: a row that changes
    how cuDNN searches (``autotune``, ``benchmark_limit``) would reuse an earlier row's choice
    in this process instead of searching."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    child = context.Process(target=_timed_in_child, args=(case, str(device), warmup, repeats, queue))
    child.start()
    row = queue.get()
    child.join()
    if "error" in row:
        raise RuntimeError(row["error"])
    return {**row, "fresh_process": True}


def _candidate_plan(base: BenchCase, device: torch.device) -> list[tuple[str, BenchCase]]:
    """The speed candidates of MMAML+KML and MProtoNet+KML, each timed against the current
    path (first and last of each method's group, as a gauge of noise) and beside the
    default path.

    The current path is what a single-GPU run takes with ``train.deterministic=false``:
    vectorised, CUDA-graphed forward + backward, cuDNN autotuning (the rows of the
    ``cuda_graphs`` section); the default path is the same with deterministic algorithms
    (``train.deterministic=true``, the training default). The candidates: bf16 with every
    per-task convolution (``shared`` for ProtoNet only: MAML's weights are per task), the
    shared convolution in fp32, bf16 ProtoNet with its logits left to autocast (the
    behaviour before they were computed in float32), the deterministic path with the
    likeliest of them, and the fastest setting of the previous round (fused Adam and TF32
    matmuls, with ``unfold`` for MAML). On a CPU the graph rows are eager."""
    cuda = device.type == "cuda"
    cases: list[BenchCase] = []
    for learner in ("maml", "protonet"):
        current = replace(base, learner=learner, modulation="kml", vectorized=True, cuda_graph=cuda)
        default = replace(current, deterministic=True)
        protonet = learner == "protonet"
        convs = ("grouped", "channels_last", "unfold", "shared") if protonet else ("grouped", "channels_last", "unfold")
        group = [current, default]
        if protonet:
            group += [replace(current, per_task_conv="shared"), replace(default, per_task_conv="shared")]
        group += [replace(current, precision="bf16", per_task_conv=conv) for conv in convs]
        if protonet:
            group.append(replace(current, precision="bf16", bf16_logits=True))
        likeliest = "shared" if protonet else "unfold"
        group += [replace(default, precision="bf16"), replace(default, precision="bf16", per_task_conv=likeliest)]
        group.append(replace(current, fused_adam=True, tf32=True, per_task_conv="grouped" if protonet else "unfold"))
        cases += group + [current]
    return [("train", case) for case in cases]


def _is_current(r: dict, device: torch.device, deterministic: bool = False) -> bool:
    """Whether a row is the current path (``deterministic=True``: the default path)."""
    return (r.get("kind") == "train" and "error" not in r and not r.get("first_order")
            and r["cuda_graph"] == (device.type == "cuda") and r["deterministic"] == deterministic
            and not (r["fused_adam"] or r["tf32"] or r["whole_graph"] or r["compile"])
            and r["per_task_conv"] == "grouped" and r["autotune"] is None and r.get("benchmark_limit") is None
            and r.get("precision", "fp32") == "fp32" and not r.get("bf16_logits", False))


def _versus_current(rows: list[dict], device: torch.device) -> None:
    """``vs_current``: the current path's time over each row's (above 1: faster), per method;
    ``vs_default``: the same against the default (deterministic) path, where timed."""
    for key, deterministic in (("vs_current", False), ("vs_default", True)):
        reference: dict[str, float] = {}
        for r in rows:
            if "error" in r or r.get("kind") != "train" or r.get("first_order"):
                continue
            if _is_current(r, device, deterministic) and r["method"] not in reference:
                reference[r["method"]] = r["ms_per_iteration"]
            if r["method"] in reference:
                r[key] = reference[r["method"]] / r["ms_per_iteration"]


def fastest_candidates(rows: list[dict], device: torch.device) -> list[BenchCase]:
    """The fastest candidate of each method among ``candidates`` rows: a row that is neither
    the current nor the default path (a row slower than the current path still counts:
    its profile says why)."""
    fastest: dict[str, dict] = {}
    for r in rows:
        if (r.get("kind") != "train" or "error" in r or _is_current(r, device)
                or _is_current(r, device, deterministic=True)):
            continue
        if r["method"] not in fastest or r["ms_per_iteration"] < fastest[r["method"]]["ms_per_iteration"]:
            fastest[r["method"]] = r
    return [BenchCase(**{f.name: r[f.name] for f in fields(BenchCase)}) for r in fastest.values()]


def _fastest_candidates_plan(candidates: list[dict] | None, placeholders: list, device: torch.device) -> list:
    """The ``candidates_profile`` section's plan: a profile of each method's fastest
    candidate of this call's ``candidates`` rows (a placeholder row where a method has none)."""
    chosen = {case.method: case for case in fastest_candidates(candidates or [], device)}
    return [("profile", chosen[case.method]) if case.method in chosen else (kind, case) for kind, case in placeholders]


def _conv_layer_plan(base: BenchCase) -> list[tuple[str, BenchCase, dict]]:
    """The ``conv_layers`` section: each Conv-4 layer shape at the base image size, fp32
    and bf16, every per-task formulation (timed in turns, one entry per shape and precision)."""
    from kml.bench.layers import conv4_layer_shapes

    return [("layer", replace(base, learner="protonet", modulation="kml", precision=precision), shape)
            for shape in conv4_layer_shapes(base.image_size) for precision in ("fp32", "bf16")]


def _versus_grouped(rows: list[dict]) -> None:
    """``vs_grouped``: the grouped formulation's time over each layer row's, per layer shape
    and precision (above 1: faster than grouped)."""
    grouped = {(r["in_channels"], r["size"], r["precision"]): r["ms_forward_backward"] for r in rows
               if r.get("kind") == "layer" and "error" not in r and r["per_task_conv"] == "grouped"}
    for r in rows:
        key = (r.get("in_channels"), r.get("size"), r.get("precision"))
        if r.get("kind") == "layer" and "error" not in r and key in grouped:
            r["vs_grouped"] = grouped[key] / r["ms_forward_backward"]


@dataclass
class SuiteSettings:
    """What :func:`run_suite` measures: the sections and the cases' sizes.

    Attributes:
        sections: the sections to run, in this order (:data:`SECTIONS`).
        image_size, shots, meta_batch_sizes, inner_steps: the cases' image size, and the
            values the ``vectorized``, ``meta_batch`` and ``inner_steps`` sections sweep.
        repeats, warmup: timed and untimed iterations of each case.
        eval_tasks: tasks of each ``eval`` case.
        task_shape: overrides of the base case's ``meta_batch_size``, ``ways``, ``shots``,
            ``queries`` and ``inner_steps`` (default: the paper's 10 tasks of 5-way 1-shot
            with 15 queries, 5 inner steps), e.g. to dry-run sections at tiny sizes.
    """

    sections: list[str]
    image_size: int = 32
    shots: list[int] = field(default_factory=lambda: [1])
    meta_batch_sizes: list[int] = field(default_factory=list)
    inner_steps: list[int] = field(default_factory=list)
    repeats: int = 3
    warmup: int = 1
    eval_tasks: int = 40
    task_shape: dict[str, int] | None = None


def run_suite(device: torch.device, settings: SuiteSettings, log=logger.info, on_section=None) -> dict:
    """Run the benchmark sections of ``settings``; returns ``{section: [rows]}`` plus
    metadata. ``on_section(result)`` is called after every section (a cut-short run keeps
    what it measured)."""
    from tqdm.auto import tqdm

    from kml.engine.numerics import tf32_settings

    out: dict = {"device": device_name(device), "torch": torch.__version__, "tf32": tf32_settings(),
                 "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None, "sections": {}}
    base = BenchCase(image_size=settings.image_size, **(settings.task_shape or {}))
    plans = {section: _PLANNERS[section](base, settings, device) for section in settings.sections
             if section in _PLANNERS and not (section == "cuda_graphs" and device.type != "cuda")}
    bar = tqdm(total=sum(len(p) for p in plans.values()), desc="bench", unit="case")
    for section, plan in plans.items():
        if section == "candidates_profile":
            plan = _fastest_candidates_plan(out["sections"].get("candidates"), plan, device)
        out["sections"][section] = _run_section(section, plan, device, settings, bar)
        if on_section is not None:
            on_section(out)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    bar.close()
    return out


def _run_section(section: str, plan: list, device: torch.device, settings: SuiteSettings, bar) -> list[dict]:
    """Every case of one section's plan, then the section's ratios."""
    rows: list[dict] = []
    for kind, case, *layer in plan:
        what = (f"layer {layer[0]['in_channels']}->{layer[0]['out_channels']} {case.precision}" if layer
                else f"{case.method} {'vectorised' if case.vectorized else 'loop'}")
        bar.set_postfix_str(f"{section}: {what} T={case.meta_batch_size}")
        try:
            rows.extend(_run_case(section, kind, case, layer, device, settings))
        except Exception as err:  # an option that fails is reported, not fatal
            rows.append({**asdict(case), **(layer[0] if layer else {}),
                         "method": case.method if kind != "layer" else "KML layer", "kind": kind,
                         "error": f"{type(err).__name__}: {err}"[:300]})
        bar.update(1)
    if any(r.get("kind") == "train" for r in rows):
        _pair_speedups([r for r in rows if r.get("kind") == "train" and "error" not in r])
    if section in ("candidates", "cudnn"):
        _versus_current(rows, device)
    if section == "conv_layers":
        _versus_grouped(rows)
    return rows


def _run_case(section: str, kind: str, case: BenchCase, layer: list, device: torch.device,
              settings: SuiteSettings) -> list[dict]:
    """The rows of one case: timed training or evaluation, a profile, a memory footprint or
    one layer's convolutions."""
    warmup, repeats = settings.warmup, settings.repeats
    if kind == "profile_fastest":
        raise ValueError("no candidates row of this method to profile: run sections=[candidates,"
                         "candidates_profile] in one call")
    if kind == "layer":
        from kml.bench.layers import time_conv_layer

        return time_conv_layer(case, *layer, device, warmup=warmup, repeats=repeats)
    if kind == "train" and device.type == "cuda" and (case.benchmark_limit is not None or case.autotune is not None):
        return [_in_fresh_process(case, device, warmup, repeats)]
    if kind == "train":
        return [time_training(case, device, warmup=warmup, repeats=repeats)]
    if kind == "profile":
        from kml.bench.profile import profile_training

        return [profile_training(case, device, warmup=warmup)]
    if kind == "memory":
        return [memory_footprint(case, device)]
    return [time_evaluation(case, device, tasks=1000 if section == "eval_1000" else settings.eval_tasks)]


# ------------------------------------------------------------------ the plan of each section
def _plan_vectorized(base, s, device):
    return [("train", replace(base, learner=learner, modulation=m, shots=k, vectorized=p))
            for learner, m in methods() for k in s.shots for p in (True, False)]


def _plan_eval(base, s, device):
    return [("eval", replace(base, learner=learner, modulation=m, vectorized=p))
            for learner, m in methods() for p in (True, False)]


def _plan_resnet12(base, s, device):
    resnet = replace(base, backbone="resnet12", meta_batch_size=RESNET12_META_BATCH["gpu" if device.type == "cuda"
                                                                                      else "cpu"])
    # each method on ResNet-12 (vectorised and loop) and, for scale, on Conv-4 in the same process
    return [("train", replace(case, learner=learner, modulation=m, vectorized=p))
            for learner, m in methods()
            for case, paths in ((resnet, (True, False)), (replace(resnet, backbone="conv4"), (True,)))
            for p in paths]


def _plan_meta_batch(base, s, device):
    return [("train", replace(base, modulation="kml", meta_batch_size=t, vectorized=p))
            for t in s.meta_batch_sizes for p in (True, False)]


def _plan_inner_steps(base, s, device):
    return [("train", replace(base, modulation="kml", inner_steps=k, vectorized=p))
            for k in s.inner_steps for p in (True, False)]


def _plan_peer(base, s, device):
    peer = BenchCase(backbone="conv4_classic32", meta_batch_size=4, image_size=84)
    return [("train", replace(peer, vectorized=p)) for p in (True, False)] + [
        ("train", replace(base, image_size=84, meta_batch_size=4, vectorized=p)) for p in (True, False)]


def _plan_paper_cpu(base, s, device):
    paper = BenchCase(image_size=84, meta_batch_size=10)
    return [("train", replace(paper, learner=learner, modulation=m, vectorized=p))
            for learner, m in (("maml", "none"), ("maml", "kml"), ("protonet", "kml")) for p in (True, False)]


def _plan_options(base, s, device):
    cases = []
    for learner, m in (("maml", "kml"), ("protonet", "kml")):
        plain = replace(base, learner=learner, modulation=m, vectorized=True)
        # the plain case twice, first and last of its group: a slow first case (allocator,
        # clocks) shows as a gap between the two rather than as a fake gain of an option
        cases += [("train", plain), ("train", replace(plain, precision="bf16")),
                  ("train", replace(plain, channels_last=True)), ("train", replace(plain, deterministic=True))]
        if device.type == "cuda":
            cases += [("train", replace(plain, cuda_graph=True)),
                      ("train", replace(plain, cuda_graph=True, precision="bf16")),
                      ("train", replace(plain, vectorized=False, cuda_graph=True))]
        cases += [("train", plain)]
        if learner == "protonet":
            cases += [("train", replace(plain, compile=True)), ("eval", replace(plain, compile=True)),
                      ("eval", plain)]
    first_order = replace(base, modulation="kml", first_order=True, vectorized=True)
    return cases + [("train", first_order), ("train", replace(first_order, compile=True))]


def _plan_cuda_graphs(base, s, device):
    return [("train", replace(base, learner=learner, modulation=m, shots=k, cuda_graph=g))
            for learner, m in methods() for k in s.shots for g in (False, True)]


def _plan_determinism(base, s, device):
    return [("train", replace(base, learner=learner, modulation="kml", deterministic=d, cuda_graph=g))
            for learner in ("maml", "protonet") for g in ((False, True) if device.type == "cuda" else (False,))
            for d in (False, True)]


def _plan_candidates_profile(base, s, device):  # the cases are chosen once the candidates section has run
    return [("profile_fastest", replace(base, learner=learner, modulation="kml")) for learner in ("maml", "protonet")]


def _plan_cudnn(base, s, device):
    # cuDNN's choice of kernels: memory order, the autotuning search, deterministic algorithms.
    # A row that changes how cuDNN searches runs in a fresh process (see _in_fresh_process)
    cases = []
    for learner in ("maml", "protonet"):
        current = replace(base, learner=learner, modulation="kml", vectorized=True, cuda_graph=device.type == "cuda")
        cases += [current, replace(current, per_task_conv="channels_last"), replace(current, benchmark_limit=0),
                  replace(current, per_task_conv="channels_last", benchmark_limit=0),
                  replace(current, per_task_conv="channels_last", fused_adam=True, tf32=True),
                  replace(current, deterministic=True), replace(current, deterministic=True, autotune=True), current]
    return [("train", c) for c in cases]


def _plan_compile(base, s, device):  # torch.compile: ProtoNet and first-order MAML (compile has no double backward)
    protonet = replace(base, learner="protonet", modulation="kml", vectorized=True)
    first_order = replace(base, modulation="kml", first_order=True, vectorized=True)
    return [("train", c) for c in (protonet, replace(protonet, compile=True), first_order,
                                   replace(first_order, compile=True))]


def _plan_profile(base, s, device):
    return [("profile", replace(base, learner=learner, modulation="kml", cuda_graph=g))
            for learner in ("maml", "protonet") for g in (False, True)]


def _plan_memory(base, s, device):
    return [("memory", replace(base, learner=learner, modulation=m, deterministic=True)) for learner, m in methods()]


def _plan_eval_1000(base, s, device):
    return [("eval", replace(base, learner=learner, modulation=m, vectorized=device.type != "cpu"))
            for learner, m in (("maml", "kml"), ("protonet", "kml"))]


#: each section's planner: ``(base case, settings, device) -> [(kind, case, *layer)]``
_PLANNERS = {
    "vectorized": _plan_vectorized, "eval": _plan_eval, "resnet12": _plan_resnet12, "meta_batch": _plan_meta_batch,
    "inner_steps": _plan_inner_steps, "peer": _plan_peer, "paper_cpu": _plan_paper_cpu, "options": _plan_options,
    "cuda_graphs": _plan_cuda_graphs, "determinism": _plan_determinism,
    "candidates": lambda base, s, device: _candidate_plan(base, device),
    "candidates_profile": _plan_candidates_profile, "conv_layers": lambda base, s, device: _conv_layer_plan(base),
    "cudnn": _plan_cudnn, "compile": _plan_compile, "profile": _plan_profile, "memory": _plan_memory,
    "eval_1000": _plan_eval_1000,
}


#: the columns of the candidates, compile and cudnn sections' training rows
_CANDIDATE_COLUMNS = [
    ("method", "method"), ("first_order", "first order"), ("cuda_graph", "CUDA graph"),
    ("whole_graph", "whole its/graph"), ("precision", "precision"), ("bf16_logits", "bf16 logits"),
    ("fused_adam", "fused Adam"), ("tf32", "TF32 matmul"), ("per_task_conv", "per-task conv"),
    ("deterministic", "deterministic"), ("autotune", "autotune"), ("benchmark_limit", "cuDNN search"),
    ("compile", "compile"), ("ms_per_iteration", "ms/it"), ("ms_spread", "spread ms"), ("tasks_per_s", "tasks/s"),
    ("peak_memory_mb", "peak MiB"), ("vs_current", "current/this"), ("vs_default", "default/this"),
]
_EVAL_COLUMNS = [("method", "method"), ("vectorized", "vectorized"), ("compile", "compile"), ("eval_tasks", "tasks"),
                 ("eval_seconds", "seconds"), ("eval_tasks_per_s", "tasks/s")]
_LAYER_COLUMNS = [
    ("in_channels", "C_in"), ("out_channels", "C_out"), ("size", "size"), ("out_size", "out"),
    ("meta_batch_size", "T"), ("images_per_task", "images/task"), ("precision", "precision"),
    ("per_task_conv", "per-task conv"), ("ms_forward_backward", "fwd+bwd ms"), ("ms_spread", "spread ms"),
    ("vs_grouped", "grouped/this"),
]
_MEMORY_COLUMNS = [
    ("method", "method"), ("meta_batch_size", "T"), ("peak_memory_mb", "peak MiB"),
    ("largest_meta_batch", "largest T that fits"), ("largest_peak_memory_mb", "its peak MiB"),
    ("smallest_failing_meta_batch", "smallest failing T"), ("first_failure", "failure"), ("search", "search"),
]


def _train_columns(section: str) -> list[tuple[str, str]]:
    """The columns of a section's training rows."""
    if section in ("candidates", "compile", "cudnn"):
        return list(_CANDIDATE_COLUMNS)
    columns = list(TRAIN_COLUMNS)
    if section == "options":
        for index, column in ((6, "precision"), (7, "channels_last"), (8, "compile")):
            columns.insert(index, (column, column))
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
    if section in ("peer", "resnet12"):
        columns.insert(1, ("backbone", "backbone"))
    if section == "resnet12":
        columns.insert(2, ("parameters", "parameters"))
    return columns


def _section_markdown(section: str, rows: list[dict]) -> list[str]:
    """One section's tables (training, evaluation, layers, profiles, memory) and failures."""
    ok = [r for r in rows if "error" not in r]
    parts = [f"### {section}"]
    train = [r for r in ok if r.get("kind") == "train"]
    if train:
        parts.append(markdown_table(train, _train_columns(section)))
    for kind, columns, before in (("eval", _EVAL_COLUMNS, [""]), ("layer", _LAYER_COLUMNS, []),
                                  ("memory", _MEMORY_COLUMNS, [])):
        chosen = [r for r in ok if r.get("kind") == kind]
        if chosen:
            parts += [*before, markdown_table(chosen, columns)]
        if kind == "layer":  # profiles come between the layers and the memory rows
            parts += [profile_markdown(r) for r in ok if r.get("kind") == "profile"]
    for r in rows:
        if "error" in r:
            parts.append(f"- {r['method']} ({'vectorised' if r['vectorized'] else 'loop'}, "
                         f"precision={r['precision']}, per-task conv={r['per_task_conv']}, compile={r['compile']}): "
                         f"failed: {r['error']}")
    return parts + [""]


def suite_markdown(result: dict) -> str:
    """All sections of :func:`run_suite` as markdown."""
    head = f"Device: **{result['device']}**, torch {result['torch']}."
    if result.get("tf32"):
        tf32 = result["tf32"]
        head += (f" TF32 in force unless a row says otherwise: float32 matmul precision "
                 f"`{tf32['float32_matmul_precision']}`, cuDNN convolutions `allow_tf32={tf32['cudnn_allow_tf32']}`"
                 + (f", cuDNN {result['cudnn']}" if result.get("cudnn") else "") + ".")
    parts = [head, ""]
    for section, rows in result["sections"].items():
        parts += _section_markdown(section, rows)
    return "\n".join(parts)


def profile_markdown(row: dict) -> str:
    """One profiled iteration (:func:`kml.bench.profile.profile_training`) as markdown:
    summary, kernel classes, phases (eager) and the top kernels."""
    graph = "CUDA graph" if row["cuda_graph"] else "eager"
    lines = [f"#### {row['method']}, {graph}", "",
             f"Wall {row['wall_ms']:.2f} ms per iteration; GPU kernels {row['kernel_ms']:.2f} ms "
             f"({row['kernels']} kernels, busy {100 * (row['gpu_busy'] or 0):.0f} % of the wall time); "
             f"{row['allocated_mb']:.0f} MiB allocated per iteration (not memory traffic)."]
    if row.get("units"):
        units = row["units"]
        lines[-1] += (f" Kernel time on tensor cores {100 * units['tensor cores']['share']:.1f} %, on CUDA cores "
                      f"{100 * units['CUDA cores']['share']:.1f} % (of which cuDNN's legacy fp32 grouped kernels "
                      f"{100 * row.get('legacy_fp32_conv_share', 0.0):.1f} %), other "
                      f"{100 * units['other']['share']:.1f} % (by kernel names).")
    if row.get("gflop") is not None:
        lines[-1] += (f" {row['gflop']:.1f} GFLOP per iteration (forward + backward, convolutions and matrix "
                      f"products), {row['achieved_tflops']:.2f} TFLOP/s achieved.")
    floors = [f"{label} {row[key]:.3f} ms" for key, label in (
        ("compute_floor_ms", "all FLOPs at the dense TF32 peak"),
        ("compute_floor_estimate_ms", "estimate with the CUDA-core share of kernel time at the fp32 peak"),
        ("compute_floor_cuda_cores_ms", "all FLOPs at the fp32 CUDA-core peak")) if row.get(key) is not None]
    if floors:
        lines[-1] += " Compute floors: " + ", ".join(floors) + "."
    lines += ["", markdown_table([{"class": k, **v, "share": 100 * v["share"]} for k, v in row["classes"].items()],
                                 [("class", "kernel class"), ("ms", "ms"), ("share", "% of kernel time")])]
    if row.get("phases") and not row["cuda_graph"]:
        lines += ["", markdown_table([{"phase": k, **v, "share": 100 * v["share"]} for k, v in row["phases"].items()],
                                     [("phase", "phase"), ("ms", "ms"), ("share", "% of kernel time")])]
    lines += ["", markdown_table([{**k, "share": 100 * k["share"]} for k in row["top"]],
                                 [("kernel", "kernel"), ("class", "class"), ("units", "units"), ("calls", "calls"),
                                  ("calls_per_task", "calls / T"), ("ms", "ms"), ("share", "%")]), ""]
    return "\n".join(lines)


#: kml 0.1 names of sections
_RENAMED_SECTIONS = {"paths": "vectorized"}

SECTIONS = ("vectorized", "cuda_graphs", "determinism", "eval", "meta_batch", "inner_steps", "peer", "paper_cpu",
            "options", "eval_1000", "resnet12", "candidates", "candidates_profile", "conv_layers", "cudnn", "compile",
            "profile", "memory")

PRESETS = {
    "cpu": dict(sections=["vectorized", "eval", "meta_batch", "inner_steps", "peer", "paper_cpu"], image_size=32,
                shots=[1], meta_batch_sizes=[1, 2, 4, 8], inner_steps=[1, 5], repeats=3, warmup=1, eval_tasks=40),
    "gpu": dict(sections=["conv_layers", "candidates", "candidates_profile", "cudnn", "vectorized", "cuda_graphs",
                          "determinism", "eval_1000", "meta_batch", "inner_steps", "peer", "eval", "options",
                          "resnet12"], image_size=84,
                shots=[1, 5], meta_batch_sizes=[1, 2, 4, 8, 16, 32], inner_steps=[1, 2, 5, 10], repeats=10, warmup=3,
                eval_tasks=200),
}


def run_from_config(cfg, log=logger.info) -> dict:
    """``scripts/bench.py``: resolve the preset, run, write JSON + markdown, print the tables."""
    import json
    from pathlib import Path

    from kml.engine.device import resolve_device
    from kml.io import atomic_write_json, atomic_write_text

    device = resolve_device(cfg.device)
    preset = cfg.preset if cfg.preset != "auto" else ("gpu" if device.type == "cuda" else "cpu")
    sections = [_RENAMED_SECTIONS.get(s, s) for s in (cfg.get("sections") or [])]
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        raise KmlError(f"sections: {unknown[0]!r} is not a benchmark section; use any of: {', '.join(SECTIONS)}")
    if preset not in PRESETS:
        raise KmlError(f"preset={preset!r} is not valid; use auto, cpu or gpu")
    options = dict(PRESETS[preset])
    for key in options:
        value = cfg.get(key)
        if value is not None:
            options[key] = list(value) if not isinstance(value, (int, float, str)) else value
    if sections:
        options["sections"] = sections
    task_shape = {key: int(cfg.get(key)) for key in ("meta_batch_size", "ways", "queries") if cfg.get(key) is not None}
    for key, value in task_shape.items():
        if value < 1:
            raise KmlError(f"{key}={value} is not valid; use a positive number")
    if task_shape:
        options["task_shape"] = task_shape
    out_dir = Path(cfg.output_dir)
    tag = "cuda" if device.type == "cuda" else "cpu"

    def write(result: dict) -> str:  # after every section: a cut-short run keeps what it measured
        result["preset"] = preset
        markdown = suite_markdown(result)
        atomic_write_json(out_dir / f"bench_{tag}.json", json.loads(json.dumps(result)))
        atomic_write_text(out_dir / f"bench_{tag}.md", markdown + "\n")
        return markdown

    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = device.type == "cuda"  # autotuned kernels for the timings
    try:
        result = run_suite(device, SuiteSettings(**options), log=log, on_section=write)
    finally:
        torch.backends.cudnn.benchmark = previous
    markdown = write(result)
    log(markdown)
    log(f"written to {out_dir / f'bench_{tag}.json'} and {out_dir / f'bench_{tag}.md'}")
    return result
