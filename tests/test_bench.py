"""The benchmark (scripts/bench.py): what it times, how it pairs rows, what it writes."""

from __future__ import annotations

import json

import pytest
import torch

from kml.bench import BenchCase, run_from_config, run_suite, time_training
from kml.bench.suite import SuiteSettings, _pair_speedups


def test_speedups_pair_each_vectorized_row_with_its_loop_twin_and_each_graph_row_with_its_eager_twin():
    base = {"method": "MAML", "shots": 1, "precision": "fp32", "cuda_graph": False}
    rows = [
        {**base, "vectorized": True, "ms_per_iteration": 10.0},
        {**base, "vectorized": False, "ms_per_iteration": 45.0},
        {**base, "shots": 5, "vectorized": True, "ms_per_iteration": 20.0},  # no loop twin
        {**base, "vectorized": True, "cuda_graph": True, "ms_per_iteration": 4.0},
        {**base, "vectorized": True, "precision": "bf16", "cuda_graph": True, "ms_per_iteration": 3.0},  # no eager twin
    ]
    _pair_speedups(rows)
    assert rows[0]["speedup"] == pytest.approx(4.5)
    assert "speedup" not in rows[1] and "speedup" not in rows[2]
    assert rows[3]["graph_speedup"] == pytest.approx(2.5)
    assert "graph_speedup" not in rows[4]


def test_time_training_runs_real_meta_updates_and_restores_the_algorithm_settings(monkeypatch):
    case = BenchCase(learner="protonet", modulation="kml", ways=3, queries=2, meta_batch_size=2, image_size=16,
                     deterministic=True)
    built = []
    build = BenchCase.build
    monkeypatch.setattr(BenchCase, "build", lambda self, device: built.append(build(self, device)) or built[-1])
    before = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    row = time_training(case, torch.device("cpu"), warmup=0, repeats=2)
    # the timed steps are real meta-updates: every learnable group moved off the initialisation
    torch.manual_seed(0)
    initial = build(case, torch.device("cpu"))
    trained = built[-1]
    moved = {name for (name, p), q in zip(trained.named_parameters(), initial.parameters()) if not torch.equal(p, q)}
    assert any(n.startswith("backbone.blocks.0.conv.weight") for n in moved)
    assert any(".generator." in n for n in moved) and any(n.startswith("encoder.") for n in moved)
    assert (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark) == before
    assert row["method"] == "MProtoNet+KML" and row["repeats"] == 2 and row["deterministic"] is True
    assert row["ms_per_iteration"] > 0
    assert row["tasks_per_s"] == pytest.approx(2 / (row["ms_per_iteration"] / 1000))


def test_suite_writes_both_paths_and_their_ratio():
    sections = []
    result = run_suite(torch.device("cpu"), SuiteSettings(sections=["inner_steps"], image_size=16, inner_steps=[1],
                                                          repeats=1, warmup=0, eval_tasks=4),
                       log=lambda *a: None, on_section=lambda out: sections.append(list(out["sections"])))
    rows = result["sections"]["inner_steps"]
    assert [(r["method"], r["vectorized"], r["inner_steps"]) for r in rows] == [
        ("MMAML+KML", True, 1), ("MMAML+KML", False, 1)]
    assert rows[0]["speedup"] == pytest.approx(rows[1]["ms_per_iteration"] / rows[0]["ms_per_iteration"])
    assert sections == [["inner_steps"]]  # written after each section


def test_unknown_section_is_refused_with_the_valid_names(tmp_path):
    from omegaconf import OmegaConf

    from kml.errors import KmlError

    cfg = OmegaConf.create({"device": "cpu", "preset": "auto", "sections": ["path"], "output_dir": str(tmp_path)})
    with pytest.raises(KmlError,
                       match="sections: 'path' is not a benchmark section; use any of: vectorized, cuda_graphs"):
        run_from_config(cfg)
    assert not list(tmp_path.iterdir())


def test_cuda_graph_sections_are_skipped_without_a_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("needs a machine without a GPU")
    result = run_suite(torch.device("cpu"), SuiteSettings(sections=["cuda_graphs"], image_size=16, repeats=1, warmup=0,
                                                          eval_tasks=4), log=lambda *a: None)
    assert result["sections"] == {}
    json.dumps(result)


def test_the_resnet12_section_times_every_registered_method_on_both_backbones(monkeypatch):
    """Every registered method on ResNet-12 (vectorised and loop, meta-batch 2 on a CPU)
    and on Conv-4 for scale; rows carry the parameter count and a backbone column."""
    from kml.bench import methods, suite_markdown

    timed = []

    def fake(case, device, warmup, repeats):
        timed.append(case)
        return {"method": case.method, "backbone": case.backbone, "vectorized": case.vectorized, "kind": "train",
                "ms_per_iteration": 1.0, "parameters": 7, "meta_batch_size": case.meta_batch_size}

    monkeypatch.setattr("kml.bench.suite.time_training", fake)
    result = run_suite(torch.device("cpu"), SuiteSettings(sections=["resnet12"], image_size=32, repeats=1, warmup=0,
                                                          eval_tasks=4), log=lambda *a: None)
    expected = [(learner, m, b, p) for learner, m in methods()
                for b, p in (("resnet12", True), ("resnet12", False), ("conv4", True))]
    assert [(c.learner, c.modulation, c.backbone, c.vectorized) for c in timed] == expected
    assert {c.meta_batch_size for c in timed} == {2} and len(timed) == 18
    table = suite_markdown(result)
    assert "| method | backbone | parameters |" in table and "| MProtoNet+KML | resnet12 | 7 |" in table


def test_a_resnet12_case_builds_resnet12_at_its_own_widths():
    with torch.device("meta"):
        learner = BenchCase(learner="protonet", modulation="kml", backbone="resnet12").build(torch.device("meta"))
    assert type(learner.backbone).__name__ == "ResNet12" and learner.backbone.channels == (64, 160, 320, 640)


#: a tiny task shape for dry runs of whole sections on a CPU
TINY_TASKS = dict(meta_batch_size=2, ways=2, queries=1, inner_steps=1)


def test_candidates_run_on_a_cpu_and_their_profile_section_picks_each_methods_fastest():
    """The candidates section at tiny sizes: every row runs (bf16 with every per-task
    convolution, shared for ProtoNet only, the old bf16 logits, the default path), each
    against the current path and the default one; the profile section then names the
    fastest candidate of each method (it needs a GPU to profile it)."""
    from kml.bench.suite import fastest_candidates, suite_markdown

    result = run_suite(torch.device("cpu"), SuiteSettings(sections=["candidates", "candidates_profile"], image_size=8,
                                                          repeats=1, warmup=0, eval_tasks=4, task_shape=TINY_TASKS),
                       log=lambda *a: None)
    rows = result["sections"]["candidates"]
    assert not [r["error"] for r in rows if "error" in r]
    settings = {(r["method"], r["precision"], r["per_task_conv"], r["deterministic"], r["bf16_logits"]) for r in rows}
    for conv in ("grouped", "channels_last", "unfold", "shared"):
        assert ("MProtoNet+KML", "bf16", conv, False, False) in settings
        assert (("MMAML+KML", "bf16", conv, False, False) in settings) == (conv != "shared")
    assert ("MProtoNet+KML", "bf16", "grouped", False, True) in settings  # logits left to autocast
    assert ("MProtoNet+KML", "fp32", "shared", True, False) in settings  # shared on the default path
    for method in ("MMAML+KML", "MProtoNet+KML"):
        group = [r for r in rows if r["method"] == method]
        assert group[0]["vs_current"] == 1.0 and group[1]["deterministic"] and group[1]["vs_default"] == 1.0
        assert group[-1]["per_task_conv"] == "grouped" and group[-1]["precision"] == "fp32"  # current, timed last
        assert all(r["meta_batch_size"] == 2 and r["inner_steps"] == 1 for r in group)
    profiled = result["sections"]["candidates_profile"]
    chosen = fastest_candidates(rows, torch.device("cpu"))
    assert [(r["method"], r["precision"], r["per_task_conv"]) for r in profiled] == [
        (c.method, c.precision, c.per_task_conv) for c in chosen]
    assert all("needs a CUDA device" in r["error"] for r in profiled)
    table = suite_markdown(result)
    assert "| bf16 logits |" in table and "| default/this |" in table


def test_the_fastest_candidate_is_neither_the_current_nor_the_default_path():
    from kml.bench.suite import fastest_candidates

    def row(method, ms, **options):
        return {**{f: v for f, v in vars(BenchCase(learner="protonet" if "Proto" in method else "maml",
                                                    modulation="kml")).items()},
                "kind": "train", "method": method, "ms_per_iteration": ms, **options}

    rows = [row("MProtoNet+KML", 1.0), row("MProtoNet+KML", 0.5, deterministic=True),
            row("MProtoNet+KML", 3.0, precision="bf16"), row("MProtoNet+KML", 2.0, per_task_conv="shared"),
            row("MProtoNet+KML", 0.1, per_task_conv="unfold", error="failed"),
            row("MMAML+KML", 9.0), row("MMAML+KML", 10.0, precision="bf16", per_task_conv="unfold")]
    chosen = fastest_candidates(rows, torch.device("cpu"))
    assert [(c.method, c.precision, c.per_task_conv) for c in chosen] == [
        ("MProtoNet+KML", "fp32", "shared"), ("MMAML+KML", "bf16", "unfold")]


def test_conv_layers_time_every_per_task_convolution_of_each_conv4_layer():
    from kml.bench.suite import suite_markdown

    result = run_suite(torch.device("cpu"), SuiteSettings(sections=["conv_layers"], image_size=8, repeats=1, warmup=0,
                                                          eval_tasks=4, task_shape=TINY_TASKS), log=lambda *a: None)
    rows = result["sections"]["conv_layers"]
    assert not [r["error"] for r in rows if "error" in r]
    assert [(r["in_channels"], r["out_channels"], r["size"]) for r in rows[::8]] == [
        (3, 32, 8), (32, 64, 4), (64, 128, 2), (128, 256, 1)]
    assert {(r["precision"], r["per_task_conv"]) for r in rows} == {
        (p, c) for p in ("fp32", "bf16") for c in ("grouped", "channels_last", "unfold", "shared")}
    assert all(r["images_per_task"] == 2 * (1 + 1) and r["meta_batch_size"] == 2 for r in rows)
    for r in rows:
        grouped = next(g for g in rows if g["per_task_conv"] == "grouped" and g["size"] == r["size"]
                       and g["precision"] == r["precision"])
        assert r["vs_grouped"] == pytest.approx(grouped["ms_forward_backward"] / r["ms_forward_backward"])
    assert "| grouped/this |" in suite_markdown(result)


def test_the_bench_case_with_bf16_logits_leaves_protonet_logits_to_autocast():
    from kml.learners.protonet import _expanded_squared_distances

    learner = BenchCase(learner="protonet", modulation="kml", image_size=16, bf16_logits=True).build(
        torch.device("cpu"))
    assert learner.class_logits is _expanded_squared_distances
    with pytest.raises(ValueError, match="bf16_logits is a ProtoNet comparison"):
        BenchCase(learner="maml", image_size=16, bf16_logits=True).build(torch.device("cpu"))


def test_the_gpu_checks_throughput_round_dry_runs_on_a_cpu(synthetic_root, tmp_path):
    """``CHECKS=throughput bash tools/gpu_checks.sh`` with ``DEVICE=cpu`` at tiny sizes: the
    data step, the CUDA tests (skipped here), the fp32/bf16 runs at two seeds and their
    across-seed parity record, then the benchmark; everything lands in ``$OUT``."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    from fixtures_engine import TINY

    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    env = dict(os.environ, OUT=str(out), DEVICE="cpu", CHECKS="throughput", PYTHON=sys.executable,
               DATA=str(synthetic_root), PARITY_SEEDS="0 1", PARITY_THREADS="1", PARITY_ARGS=" ".join(TINY),
               BENCH_SECTIONS="[conv_layers,candidates_profile]",
               BENCH_ARGS="image_size=8 repeats=1 warmup=0 meta_batch_size=1 ways=2 queries=1")
    proc = subprocess.run(["bash", str(repo / "tools" / "gpu_checks.sh")], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    parity = json.loads((out / "parity_bf16.json").read_text())["learners"]["protonet"]
    assert [s["seed"] for s in parity["seeds"]] == [0, 1] and not parity["missing_seeds"]
    assert all(s["paired"]["tasks"] == 12 for s in parity["seeds"])  # 4 test tasks in each of 3 modes, paired
    spread = parity["across_seeds"]
    assert parity["parity"] == (spread["low"] <= 0 <= spread["high"])
    assert "bf16 - fp32 (protonet): seed 0:" in proc.stdout
    bench = json.loads((out / "bench_cpu.json").read_text())["sections"]
    assert len(bench["conv_layers"]) == 32 and not [r for r in bench["conv_layers"] if "error" in r]
    assert all("candidates" in r["error"] for r in bench["candidates_profile"])  # no candidates in this call
    assert (out / "cuda_tests.log").is_file() and (out / "parity.json").is_file()
    assert "bench exit 0" in proc.stdout
    bad = subprocess.run(["bash", str(repo / "tools" / "gpu_checks.sh")], cwd=repo, capture_output=True, text=True,
                         env=dict(env, CHECKS="fast"), timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: CHECKS=fast is not valid")


def test_a_layers_formulations_take_turns_within_each_repeat(monkeypatch):
    """So that a machine slowing down during the measurement moves them alike."""
    import kml.bench.layers as layers

    order = []
    original = layers.per_task_conv
    monkeypatch.setattr(layers, "per_task_conv", lambda f: order.append(f) or original(f))
    case = BenchCase(learner="protonet", modulation="kml", meta_batch_size=2, ways=2, queries=1, image_size=8)
    rows = layers.time_conv_layer(case, {"in_channels": 3, "out_channels": 4, "size": 8}, torch.device("cpu"),
                                  warmup=1, repeats=2, formulations=("grouped", "shared"))
    assert order == ["grouped", "shared"] * 3
    assert [(r["per_task_conv"], r["repeats"]) for r in rows] == [("grouped", 2), ("shared", 2)]
