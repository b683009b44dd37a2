"""Metric loggers (``logger=csv|tensorboard|wandb``, fed the records of metrics.jsonl) and
the run's messages in Python logging (Hydra's ``<run>/train.log``)."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import pytest
from fixtures_engine import TINY

from kml.engine.runs import run_training
from kml.errors import KmlError

#: 4 iterations, a metrics record every 2 and a validation every 2 (4 val tasks per mode)
LOGGED = [*TINY, "eval.val_every=2", "eval.val_tasks_per_mode=4"]
MODES = ["synthetic_glyphs", "synthetic_textures", "synthetic_shapes"]


def _records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_composition_of_the_logger_group(compose):
    assert compose([]).logger == {"csv": None, "tensorboard": None, "wandb": None}  # logger=none
    both = compose(["logger=[tensorboard,wandb]", "logger.wandb.project=mine"])
    assert both.logger.csv is None and both.logger.tensorboard.dir == "tensorboard"
    assert both.logger.wandb.project == "mine" and both.logger.wandb.mode is None


def test_csv_and_tensorboard_get_every_record_of_metrics_jsonl(compose, synthetic_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    cfg = compose([f"data.root={synthetic_root}", *LOGGED, "logger=[csv,tensorboard]"])
    run_training(cfg, run_dir, log=lambda *a: None)
    records = _records(run_dir)
    train = [r for r in records if "loss" in r]
    val = [r for r in records if "val" in r]
    assert [r["iteration"] for r in train] == [r["iteration"] for r in val] == [2, 4]

    # CSV: one row per logged iteration, training and validation side by side
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [2, 4]
    for row, t, v in zip(rows, train, val):
        assert float(row["train/loss"]) == pytest.approx(t["loss"])
        assert float(row["train/lr"]) == pytest.approx(t["lr"])
        assert float(row["train/accuracy/synthetic_shapes"]) == pytest.approx(t["per_mode"]["synthetic_shapes"])
        assert float(row["val/accuracy"]) == pytest.approx(v["val"]["accuracy"])
        assert (float(row["val/accuracy/synthetic_glyphs"])
                == pytest.approx(v["val"]["per_mode"]["synthetic_glyphs"]["accuracy"]))

    # TensorBoard: the event files read back with tensorboard's own reader
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert tags == {"train/loss", "train/accuracy", "train/lr", "train/tasks_per_s", "val/accuracy", "val/ci95",
                    *[f"train/accuracy/{m}" for m in MODES], *[f"val/accuracy/{m}" for m in MODES]}
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4]
    assert [e.value for e in events.Scalars("train/loss")] == pytest.approx([r["loss"] for r in train])
    assert [e.step for e in events.Scalars("val/accuracy")] == [2, 4]
    assert [e.value for e in events.Scalars("val/accuracy")] == pytest.approx([r["val"]["accuracy"] for r in val])
    # the objective kml-train returns: the val accuracy of the tested (last) weights
    assert (json.loads((run_dir / "results.json").read_text())["val_accuracy"]
            == pytest.approx(val[-1]["val"]["accuracy"]))


def test_a_resumed_run_continues_its_csv(compose, synthetic_root, tmp_path):
    """The CSV of a resumed run is rebuilt from metrics.jsonl, so it has each row once."""
    run_dir = tmp_path / "run"
    common = [f"data.root={synthetic_root}", *TINY, "train.log_every=1", "logger=csv"]
    run_training(compose([*common, "train.iterations=2"]), run_dir, log=lambda *a: None)
    run_training(compose([*common, "train.iterations=4", "resume=auto"]), run_dir, log=lambda *a: None)
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["iteration"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["train/loss"]) for r in rows] == pytest.approx([r["loss"] for r in _records(run_dir)])


def test_wandb_offline_writes_a_run_folder(compose, synthetic_root, tmp_path, monkeypatch):
    for name, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_CONFIG_DIR": tmp_path / "cfg",
                        "WANDB_CACHE_DIR": tmp_path / "cache", "WANDB_DATA_DIR": tmp_path / "data"}.items():
        monkeypatch.setenv(name, str(value))
    run_dir = tmp_path / "run"
    cfg = compose([f"data.root={synthetic_root}", *TINY, "logger=wandb", "logger.wandb.project=kml-tests"])
    run_training(cfg, run_dir, log=lambda *a: None)
    run_id = (run_dir / "wandb" / "kml_run_id").read_text().strip()
    (folder,) = (run_dir / "wandb").glob(f"offline-run-*-{run_id}")
    assert (folder / f"run-{run_id}.wandb").is_file()  # the run's records, to `wandb sync` later


def test_a_missing_extra_is_one_line_naming_the_pip_command(compose, synthetic_root, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    cfg = compose([f"data.root={synthetic_root}", *TINY, "logger=tensorboard"])
    with pytest.raises(KmlError) as info:
        run_training(cfg, tmp_path / "run", log=lambda *a: None)
    assert str(info.value) == (
        'logger=tensorboard needs the tensorboard package, which is not installed; '
        'install it with: pip install "kernel-modulation[tensorboard]"'
    )
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_the_runs_messages_go_to_train_log(synthetic_root, tmp_path):
    from reliability_support import cli

    run_dir = tmp_path / "run"
    result = cli("train.py", f"data.root={synthetic_root}", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert result.code == 0, result.err
    log = (run_dir / "train.log").read_text()
    assert "[kml.engine.runs][INFO] MProtoNet+KML on synthetic (synthetic), 3-way 1-shot" in log
    assert "| **overall** |" in log and f"run directory: {run_dir}" in log
    assert "| **overall** |" in result.out  # and on the terminal, as plain lines
    assert not result.out.lstrip().startswith("[")
    again = cli("train.py", f"data.root={synthetic_root}", *TINY, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert again.code == 1
    assert (run_dir / "train.log").read_text().rstrip().endswith(
        f"error: {run_dir} already holds a run (config.yaml exists); pass resume={run_dir} to continue it, "
        "or choose another output directory"
    )
