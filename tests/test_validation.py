"""Validation during training: fixed val tasks, val records in metrics.jsonl, best.pt
selection, eval.checkpoint=last|best, and the per-task test records."""

from __future__ import annotations

import json

import pytest
import torch
from fixtures_engine import TINY, TINY_MAML

from kml.config import ConfigError, validate
from kml.engine.checkpoints import load_checkpoint
from kml.engine.runs import run_training

VAL = ["eval.val_every=2", "eval.val_tasks_per_mode=5", "train.iterations=6"]


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_val_tasks_are_fixed_and_the_same_for_every_method(synthetic_root, compose):
    """The val tasks of two different methods (and two calls) are the identical tasks."""
    from kml.engine.from_config import tasksets_for

    first = compose([f"data.root={synthetic_root}", *TINY, *TINY_MAML, "learner=maml"])
    second = compose([f"data.root={synthetic_root}", *TINY, "learner=protonet", "train.seed=7"])
    a = list(tasksets_for(first, "cpu", seed=0).val.eval_tasks("synthetic_glyphs", 6, 4, seed=2021))
    b = list(tasksets_for(second, "cpu", seed=7).val.eval_tasks("synthetic_glyphs", 6, 4, seed=2021))
    for x, y in zip(a, b):
        torch.testing.assert_close(x.support, y.support, atol=0, rtol=0)
        torch.testing.assert_close(x.query, y.query, atol=0, rtol=0)
    assert sum(batch.support.shape[0] for batch in a) == 6


def test_best_checkpoint_is_the_best_val_accuracy_and_is_tested(synthetic_root, compose, tmp_path):
    cfg = compose([f"data.root={synthetic_root}", *TINY, *VAL, "eval.checkpoint=best", "train.lr=0.05"])
    results = run_training(cfg, tmp_path, log=lambda *a: None)
    val = [r for r in _records(tmp_path) if "val" in r]
    assert [r["iteration"] for r in val] == [2, 4, 6]
    assert set(val[0]["val"]["per_mode"]) == {"synthetic_glyphs", "synthetic_textures", "synthetic_shapes"}
    assert all(m["tasks"] == 5 for m in val[0]["val"]["per_mode"].values()) and val[0]["val"]["tasks"] == 15
    # best.pt: the first iteration with the highest overall val accuracy
    accuracies = [r["val"]["accuracy"] for r in val]
    best_iteration = val[accuracies.index(max(accuracies))]["iteration"]
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["iteration"] == best_iteration
    assert best["best"] == {"iteration": best_iteration, "accuracy": max(accuracies)}
    iter_ckpt = load_checkpoint(tmp_path / "checkpoints" / f"iter_{best_iteration:08d}.pt")
    for key, value in iter_ckpt["model"].items():
        torch.testing.assert_close(best["model"][key], value, atol=0, rtol=0)
    # every val task's accuracy, per validation: their mean is the logged val accuracy
    per_task = [json.loads(line) for line in (tmp_path / "val_task_accuracies.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in per_task] == [2, 4, 6]
    for line, logged in zip(per_task, val):
        assert {m: len(a) for m, a in line["modes"].items()} == {m: 5 for m in logged["val"]["per_mode"]}
        pooled = [a for accuracies in line["modes"].values() for a in accuracies]
        assert abs(100 * sum(pooled) / len(pooled) - logged["val"]["accuracy"]) < 1e-3
    # the tested checkpoint is recorded, and its weights gave the test accuracies
    assert results["checkpoint"] == "best" and results["checkpoint_iterations"] == {"all": best_iteration}
    assert results["iterations"] == {"all": 6}


def test_tested_weights_differ_between_last_and_best(synthetic_root, compose, tmp_path):
    common = [f"data.root={synthetic_root}", *TINY, *VAL, "train.lr=0.05"]
    last = run_training(compose([*common, "eval.checkpoint=last"]), tmp_path / "last", log=lambda *a: None)
    best = run_training(compose([*common, "eval.checkpoint=best"]), tmp_path / "best", log=lambda *a: None)
    assert last["checkpoint_iterations"] == {"all": 6}
    if best["checkpoint_iterations"]["all"] != 6:  # a different checkpoint: different test tasks' accuracies
        a = json.loads((tmp_path / "last" / "task_accuracies.json").read_text())
        b = json.loads((tmp_path / "best" / "task_accuracies.json").read_text())
        assert a["modes"] != b["modes"]


def test_best_needs_validation_and_a_run_without_val_classes_is_refused(compose):
    with pytest.raises(ConfigError, match="eval.checkpoint=best .* set eval.val_every"):
        validate(compose(["eval.checkpoint=best"]))
    with pytest.raises(ConfigError, match="eval.val_every=-1 is out of range"):
        validate(compose(["eval.val_every=-1"]))


def test_per_task_records_hold_every_test_task_in_order(synthetic_root, compose, tmp_path):
    cfg = compose([f"data.root={synthetic_root}", *TINY, "train.iterations=2"])
    results = run_training(cfg, tmp_path, log=lambda *a: None)
    records = json.loads((tmp_path / "task_accuracies.json").read_text())
    assert records["format"] == "kml-task-accuracies-v1" and records["eval"] == results["eval"]
    for mode, summary in results["per_mode"].items():
        entry = records["modes"][mode]
        assert entry["task_ids"] == list(range(summary["tasks"]))
        assert 100 * sum(entry["accuracy"]) / len(entry["accuracy"]) == pytest.approx(summary["accuracy"], abs=1e-3)
        assert len(entry["loss"]) == summary["tasks"]


def test_resume_keeps_the_best_record(synthetic_root, compose, tmp_path):
    """A run resumed after validations keeps its best so far (best.pt is not re-chosen from scratch)."""
    common = [f"data.root={synthetic_root}", *TINY, "eval.val_every=2", "eval.val_tasks_per_mode=5", "train.lr=0.05"]
    run_training(compose([*common, "train.iterations=4"]), tmp_path / "run", log=lambda *a: None)
    first = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["best"]
    resumed = compose([*common, "train.iterations=6", f"resume={tmp_path / 'run'}"])
    run_training(resumed, tmp_path / "run", overrides=["train.iterations=6"], log=lambda *a: None)
    final = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["best"]
    assert final["accuracy"] >= first["accuracy"]
    if final["iteration"] <= 4:
        assert final == first
