"""The benchmark (scripts/bench.py): what it times, how it pairs rows, what it writes."""

from __future__ import annotations

import json

import pytest
import torch

from kml.bench import BenchCase, run_from_config, run_suite, time_training
from kml.bench.suite import _pair_speedups


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
    result = run_suite(torch.device("cpu"), sections=["inner_steps"], image_size=16, shots=[1], meta_batch_sizes=[],
                       inner_steps=[1], repeats=1, warmup=0, eval_tasks=4, log=lambda *a: None,
                       on_section=lambda out: sections.append(list(out["sections"])))
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
    result = run_suite(torch.device("cpu"), sections=["cuda_graphs"], image_size=16, shots=[1], meta_batch_sizes=[],
                       inner_steps=[], repeats=1, warmup=0, eval_tasks=4, log=lambda *a: None)
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
    result = run_suite(torch.device("cpu"), sections=["resnet12"], image_size=32, shots=[1], meta_batch_sizes=[],
                       inner_steps=[], repeats=1, warmup=0, eval_tasks=4, log=lambda *a: None)
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
