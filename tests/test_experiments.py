"""Experiments: config composition, every method end to end, run directory contents,
evaluation, comparison table, sweeps, and kill-and-resume equality."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from fixtures_engine import SCRIPTS, TINY, TINY_MAML, run_script
from omegaconf import OmegaConf

from kml.cli import CONFIG_DIR
from kml.config import ConfigError, validate
from kml.engine.checkpoints import load_checkpoint, load_run
from kml.engine.runs import evaluate_run, run_training

CONFIGS = Path(CONFIG_DIR)
MODES = sorted(p.stem for p in (CONFIGS / "mode").glob("*.yaml"))

EXPECTED_DATASETS = {
    "synthetic": ["synthetic"],
    "2mode_dagger": ["miniimagenet", "fc100"],
    "2mode": ["omniglot", "miniimagenet"],
    "3mode": ["omniglot", "miniimagenet", "fc100"],
    "5mode": ["omniglot", "miniimagenet", "fc100", "cub", "aircraft"],
    "5mode_dev": ["omniglot", "miniimagenet", "tinyimagenet", "cub", "gtsrb"],
}

METHODS = [  # (learner, modulation, multi) -> the paper's 8 methods
    ("maml", "none", False, "MAML"),
    ("maml", "none", True, "Multi-MAML"),
    ("maml", "film", False, "MMAML"),
    ("maml", "kml", False, "MMAML+KML"),
    ("protonet", "none", False, "ProtoNet"),
    ("protonet", "none", True, "Multi-ProtoNet"),
    ("protonet", "film", False, "MProtoNet"),
    ("protonet", "kml", False, "MProtoNet+KML"),
]


def test_every_mode_config_composes_and_validates(compose):
    assert {"synthetic", "2mode_dagger", "2mode", "3mode", "5mode", "5mode_dev", "omniglot", "miniimagenet",
            "fc100", "cub", "aircraft", "gtsrb", "tinyimagenet"} <= set(MODES)
    for mode in MODES:
        for learner in ("maml", "protonet"):
            for modulation in ("none", "film", "kml"):
                cfg = compose([f"mode={mode}", f"learner={learner}", f"modulation={modulation}"])
                validate(cfg)
                assert cfg.mode.name == mode
                assert cfg.learner.name == learner and cfg.modulation.name == modulation
                assert list(cfg.mode.datasets) == EXPECTED_DATASETS.get(mode, [mode])


def test_paper_defaults(compose):
    default = compose([])
    assert (default.mode.name, default.learner.name, default.modulation.name) == ("synthetic", "protonet", "kml")
    cfg = compose(["mode=5mode", "learner=maml", "modulation=kml"])
    assert (cfg.episode.ways, cfg.episode.shots, cfg.episode.queries) == (5, 1, 15)
    assert (cfg.train.iterations, cfg.train.meta_batch_size, cfg.train.lr) == (60000, 10, 0.001)
    assert (cfg.learner.inner_steps, cfg.learner.inner_lr, cfg.learner.grad_clip) == (5, 0.05, 20.0)
    assert cfg.learner.first_order is False and cfg.data.image_size == 84
    assert list(cfg.learner.backbone.channels) == [32, 64, 128, 256] and cfg.learner.backbone.bn_affine is False
    assert cfg.eval.tasks_per_mode == 1000
    proto = compose(["mode=5mode", "learner=protonet"])
    assert (proto.train.iterations, proto.train.scheduler.step_size, proto.train.scheduler.gamma) == (30000, 10000, 0.5)
    assert proto.learner.backbone.pool == "flatten" and proto.learner.backbone.bn_affine is True


def test_unknown_keys_and_bad_values_are_rejected(compose):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException, match="iteratons"):
        compose(["train.iteratons=5"])
    with pytest.raises(ConfigCompositionException):
        compose(["episode.ways=five"])
    with pytest.raises(ConfigError, match=r"episode.ways=1 is out of range: it must be >= 2"):
        validate(compose(["episode.ways=1"]))
    with pytest.raises(ConfigError, match=r"train.lr=0.0 is out of range: it must be > 0"):
        validate(compose(["train.lr=0.0"]))


def _check_results_schema(results: dict, modes: list[str], tasks: int, run_dir: Path | None = None) -> None:
    assert set(results) >= {"overall", "per_mode", "method", "config", "eval", "mode", "iterations"}
    assert list(results["per_mode"]) == modes
    for entry in list(results["per_mode"].values()) + [results["overall"]]:
        assert set(entry) >= {"accuracy", "ci95", "tasks"}
        assert 0.0 <= entry["accuracy"] <= 100.0
        assert entry["ci95"] == pytest.approx(1.96 * entry["std"] / math.sqrt(entry["tasks"]))
    if run_dir is not None:  # against a sample std computed here, from the per-task records
        import statistics

        records = json.loads((run_dir / "task_accuracies.json").read_text())["modes"]
        pooled = []
        for mode, entry in results["per_mode"].items():
            accuracies = records[mode]["accuracy"]
            pooled += accuracies
            expected = 100 * 1.96 * statistics.stdev(accuracies) / math.sqrt(len(accuracies))
            assert entry["ci95"] == pytest.approx(expected, rel=1e-4, abs=1e-4)
            assert entry["accuracy"] == pytest.approx(100 * statistics.fmean(accuracies), abs=1e-3)
        expected = 100 * 1.96 * statistics.stdev(pooled) / math.sqrt(len(pooled))
        assert results["overall"]["ci95"] == pytest.approx(expected, rel=1e-4, abs=1e-4)
    assert all(e["tasks"] == tasks for e in results["per_mode"].values())
    assert results["overall"]["tasks"] == tasks * len(modes)
    mean = sum(e["accuracy"] for e in results["per_mode"].values()) / len(modes)
    assert results["overall"]["accuracy"] == pytest.approx(mean)  # equal tasks per mode


@pytest.mark.parametrize("learner,modulation,multi,method", METHODS, ids=[m[3] for m in METHODS])
def test_every_method_runs_end_to_end(compose, synthetic_root, tmp_path, learner, modulation, multi, method):
    cfg = compose([f"learner={learner}", f"modulation={modulation}", f"multi={str(multi).lower()}",
                   f"data.root={synthetic_root}", *TINY])
    run_dir = tmp_path / "run"
    results = run_training(cfg, run_dir, log=lambda *a: None)
    saved = json.loads((run_dir / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    assert saved["method"] == method
    modes = ["synthetic_glyphs", "synthetic_textures", "synthetic_shapes"]
    _check_results_schema(saved, modes, tasks=4, run_dir=run_dir)
    assert OmegaConf.load(run_dir / "config.yaml").learner.name == learner
    for name in ("learning_curve.png", "per_mode_accuracy.png", "run_info.json"):
        assert (run_dir / name).is_file(), name
    assert (run_dir / "task_embeddings.png").is_file() == (modulation != "none")
    if multi:
        assert sorted(p.name for p in (run_dir / "specialists").iterdir()) == sorted(modes)
        assert saved["iterations"] == {m: 2 for m in modes}
        metric_dirs = [run_dir / "specialists" / m for m in modes]
    else:
        assert saved["iterations"] == {"all": 4}
        metric_dirs = [run_dir]
        ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
        assert ckpts == ["iter_00000002.pt", "iter_00000004.pt", "last.pt"]
    for folder in metric_dirs:
        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
        assert [r["iteration"] for r in records] == ([2] if multi else [2, 4])
        assert set(records[0]) >= {"iteration", "loss", "accuracy", "per_mode", "tasks_per_s"}


def test_evaluation_is_reproducible_and_the_same_tasks_for_every_method(compose, synthetic_root, tmp_path):
    cfg = compose([f"data.root={synthetic_root}", *TINY])
    run_dir = tmp_path / "run"
    results = run_training(cfg, run_dir, log=lambda *a: None)
    again = evaluate_run(run_dir, device="cpu", progress=False, log=lambda *a: None)
    assert again["per_mode"] == results["per_mode"]
    assert (run_dir / "eval_last_test.json").is_file()
    # the evaluation tasks depend on the eval seed, not on the method or its training
    from kml.engine.from_config import tasksets_for

    test = tasksets_for(cfg, "cpu").test
    first = next(test.eval_tasks("synthetic_shapes", 4, 4, seed=cfg.eval.seed))
    test.sample(3)  # advancing the training-style RNG must not change evaluation tasks
    second = next(test.eval_tasks("synthetic_shapes", 4, 4, seed=cfg.eval.seed))
    assert torch.equal(first.query, second.query) and torch.equal(first.support_labels, second.support_labels)


def test_load_run_restores_the_trained_learner(compose, synthetic_root, tmp_path):
    cfg = compose(["learner=maml", "modulation=kml", f"data.root={synthetic_root}", *TINY])
    run_dir = tmp_path / "run"
    run_training(cfg, run_dir, log=lambda *a: None)
    loaded = load_run(run_dir, checkpoint=2)
    assert loaded.iteration == 2 and loaded.method == "MMAML+KML"
    assert loaded.mode_names == ["synthetic_glyphs", "synthetic_textures", "synthetic_shapes"]
    state = load_checkpoint(run_dir / "checkpoints" / "iter_00000002.pt")
    for name, tensor in loaded.learner.state_dict().items():
        assert torch.equal(tensor, state["model"][name])


def test_compare_script_writes_the_paper_style_table(compose, synthetic_root, tmp_path):
    for learner in ("maml", "protonet"):
        cfg = compose([f"learner={learner}", "modulation=none", f"data.root={synthetic_root}", *TINY])
        run_training(cfg, tmp_path / "runs" / learner, log=lambda *a: None)
    proc = run_script("compare.py", f"run_dirs=[{tmp_path}/runs/*]", "baseline=MAML", f"output={tmp_path}/table.md",
                      cwd=tmp_path)
    text = (tmp_path / "table.md").read_text()
    table = text.split("\n\n")[0]
    assert (table.splitlines()[0]
            == "| method | setup | synthetic_glyphs | synthetic_textures | synthetic_shapes | overall | seeds |")
    assert {line.split("|")[1].strip() for line in table.splitlines()[2:]} == {"MAML", "ProtoNet"}
    assert " +- " in table and text.strip() in proc.stdout
    assert len(json.loads((tmp_path / "table.json").read_text())) == 2
    # the paired difference ProtoNet - MAML, checked against the per-task records by hand
    tasks = {name: json.loads((tmp_path / "runs" / name / "task_accuracies.json").read_text())
             for name in ("maml", "protonet")}
    diffs = [p - m for mode in tasks["maml"]["modes"]
             for p, m in zip(tasks["protonet"]["modes"][mode]["accuracy"], tasks["maml"]["modes"][mode]["accuracy"])]
    paired = json.loads((tmp_path / "table_paired.json").read_text())
    assert paired["baseline"]["method"] == "MAML"
    overall = paired["comparisons"][0]["overall"]
    assert overall["tasks"] == len(diffs) == 12
    assert overall["difference"] == pytest.approx(100 * sum(diffs) / len(diffs))
    row = next(line for line in text.splitlines() if line.startswith("| ProtoNet |") and "**" in line)
    assert f"{overall['difference']:+.2f} +- {overall['ci95']:.2f}" in row


def test_multirun_sweep(synthetic_root, tmp_path):
    run_script("train.py", "-m", "learner=maml,protonet", "modulation=none,kml", f"data.root={synthetic_root}",
               *TINY, "train.iterations=2", "hydra.sweep.dir=sweep", cwd=tmp_path)
    results = sorted((tmp_path / "sweep").glob("*/results.json"))
    methods = sorted(json.loads(p.read_text())["method"] for p in results)
    assert methods == ["MAML", "MMAML+KML", "MProtoNet+KML", "ProtoNet"]


def _final_parameters(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def test_sigkill_then_resume_equals_an_uninterrupted_run(synthetic_root, tmp_path):
    args = ["learner=maml", "modulation=kml", f"data.root={synthetic_root}", *TINY, *TINY_MAML,
            "train.iterations=8", "train.checkpoint_every=3", "train.log_every=1"]
    run_script("train.py", *args, "hydra.run.dir=full", cwd=tmp_path)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, str(SCRIPTS / "train.py"), *args, f"hydra.run.dir={killed}"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    # last.pt is written after iter_00000003.pt (see save_checkpoint): wait for it
    while not (killed / "checkpoints" / "last.pt").exists():
        assert proc.poll() is None, "training ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "results.json").exists()
    interrupted_at = load_checkpoint(killed / "checkpoints" / "last.pt")["iteration"]
    assert 3 <= interrupted_at < 8

    run_script("train.py", f"resume={killed}", cwd=tmp_path)
    full, resumed = _final_parameters(tmp_path / "full"), _final_parameters(killed)
    assert full.keys() == resumed.keys()
    for name in full:
        assert torch.equal(full[name], resumed[name]), name
    a = json.loads((tmp_path / "full" / "results.json").read_text())
    b = json.loads((killed / "results.json").read_text())
    assert a["per_mode"] == b["per_mode"] and a["overall"] == b["overall"]
    metrics_a = (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()
    metrics_b = (killed / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["loss"] for x in metrics_a] == [json.loads(x)["loss"] for x in metrics_b]


def test_resume_with_another_config_is_refused(compose, synthetic_root, tmp_path):
    cfg = compose([f"data.root={synthetic_root}", *TINY, "train.iterations=2"])
    run_training(cfg, tmp_path / "run", log=lambda *a: None)
    proc = run_script("train.py", f"resume={tmp_path / 'run'}", "learner=maml", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    assert ("resume points at a run with a different config: learner is 'protonet' in the run but 'maml' now"
            in proc.stderr)
    assert "Traceback" not in proc.stderr
    # resumable keys may change: more iterations continue the run
    run_script("train.py", f"resume={tmp_path / 'run'}", "train.iterations=4", cwd=tmp_path)
    assert load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["iteration"] == 4


def test_auto_path_choice_is_a_fixed_rule():
    from kml.engine.device import CPU_BATCHED_MAX_IMAGE_SIZE, use_vectorized

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert use_vectorized("auto", gpu, 84) and use_vectorized("auto", gpu, 32)
    assert use_vectorized("auto", cpu, 32) and use_vectorized("auto", cpu, CPU_BATCHED_MAX_IMAGE_SIZE)
    assert not use_vectorized("auto", cpu, 84)
    assert use_vectorized("true", cpu, 84) and not use_vectorized("false", gpu, 32)
