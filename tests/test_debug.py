"""The ``debug`` config group: ``debug=fast`` runs every stage of a run on a handful of tasks,
``debug=overfit`` trains on one fixed meta-batch until its loss is close to 0."""

from __future__ import annotations

import json
from pathlib import Path

from fixtures_engine import TINY
from reliability_support import cli, final_parameters, same_parameters

import kml.engine.trainer as trainer

#: the tests' tiny model, without TINY's budget (the debug presets set theirs)
MODEL = [o for o in TINY if o.split("=")[0].split(".")[0] in ("data", "learner", "modulation", "episode")
         and not o.startswith("learner.specialist")] + ["train.progress=false"]


def _records(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_debug_fast_runs_every_stage_of_a_run(synthetic_root, tmp_path, compose):
    cfg = compose(["debug=fast"])
    assert (cfg.train.iterations, cfg.eval.tasks_per_mode, cfg.eval.val_every) == (4, 10, 2)
    assert cfg.mode.name == "synthetic" and cfg.learner.name == "protonet"  # the run's own method and mode

    result = cli("train.py", "debug=fast", f"data.root={synthetic_root}", *MODEL, "hydra.run.dir=run", cwd=tmp_path)
    assert result.code == 0, result.err
    run = tmp_path / "run"
    records = _records(run)
    assert [r["iteration"] for r in records if "loss" in r] == [2, 4]  # training, logged
    assert [r["iteration"] for r in records if "val" in r] == [2, 4]  # validation
    checkpoints = {p.name for p in (run / "checkpoints").iterdir()}
    assert checkpoints >= {"iter_00000002.pt", "iter_00000004.pt", "last.pt", "best.pt"}
    results = json.loads((run / "results.json").read_text())  # the test of the tested checkpoint
    assert results["iterations"] == {"all": 4}
    assert [m["tasks"] for m in results["per_mode"].values()] == [10, 10, 10]
    for name in ("config.yaml", "run_info.json", "task_accuracies.json", "train.log", "learning_curve.png",
                 "per_mode_accuracy.png", "task_embeddings.png"):
        assert (run / name).is_file(), name
    assert "| **overall** |" in result.out  # the accuracy table


def test_debug_overfit_memorises_one_batch(synthetic_root, tmp_path, monkeypatch, compose):
    assert compose(["debug=overfit"]).train.overfit_batches == 1
    draw, draws = trainer.Trainer._draw, []

    def counted(self, num_tasks):
        draws.append(num_tasks)
        return draw(self, num_tasks)

    monkeypatch.setattr(trainer.Trainer, "_draw", counted)
    # a model wide enough to memorise a batch in the preset's 40 iterations (4-wide layers are not)
    model = [o for o in MODEL if not o.startswith(("learner.backbone.channels", "modulation.task_dim"))]
    result = cli("train.py", "debug=overfit", f"data.root={synthetic_root}", *model,
                 "learner.backbone.channels=[16,16,16,16]", "modulation.task_dim=8", "hydra.run.dir=run", cwd=tmp_path)
    assert result.code == 0, result.err
    losses = [r["loss"] for r in _records(tmp_path / "run") if "loss" in r]
    assert len(losses) == 8 and losses[-1] < 0.1 < losses[0]
    assert len(draws) == 1  # one meta-batch, drawn once and repeated


def test_the_repeated_batch_is_the_same_after_a_resume(synthetic_root, tmp_path):
    args = ["train.overfit_batches=2", f"data.root={synthetic_root}", *TINY]  # 4 iterations, checkpoints every 2
    assert cli("train.py", *args, "hydra.run.dir=whole", cwd=tmp_path).code == 0
    assert cli("train.py", *args, "train.iterations=2", "hydra.run.dir=part", cwd=tmp_path).code == 0
    resumed = cli("train.py", "resume=part", "train.iterations=4", cwd=tmp_path)
    assert resumed.code == 0, resumed.err
    assert same_parameters(final_parameters(tmp_path / "whole"), final_parameters(tmp_path / "part"))


def test_a_preset_cannot_change_a_resumed_run(synthetic_root, tmp_path):
    """``resume=<run> debug=fast`` would silently keep the run's own budget: it is refused."""
    assert cli("train.py", f"data.root={synthetic_root}", *TINY, "train.iterations=2", "hydra.run.dir=run",
               cwd=tmp_path).code == 0
    for preset in ("debug=fast", "experiment=paper/2mode_maml"):
        result = cli("train.py", "resume=run", preset, cwd=tmp_path)
        assert result.code == 1
        assert result.err.strip() == (
            f"error: resume points at a run with a different config: {preset} chooses the settings of a new run, "
            "which a resumed run keeps. Drop these overrides to resume it, or start a new run without resume=")
