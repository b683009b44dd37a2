"""Reliability and safety, part 2: faults. Real signals: SIGKILL while a
checkpoint is written, during evaluation and during data preparation; Ctrl-C from
outside at an arbitrary moment; SIGTERM and a second Ctrl-C; two runs at once. After
each, nothing corrupt is found and a resumed run ends exactly like an uninterrupted one.

(test_experiments.py already kills a run between two checkpoints and resumes it.)
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_support import SCRIPTS, TINY, TINY_MAML, cli, final_parameters, same_parameters, start_driver, wait_for

from kml.engine.checkpoints import load_checkpoint


def _args(root: Path) -> list[str]:
    """A tiny MMAML+KML run: 8 iterations, checkpoints every 2, a metrics line every 3."""
    return ["learner=maml", "modulation=kml", f"data.root={root}", *TINY, *TINY_MAML,
            "train.iterations=8", "train.checkpoint_every=2", "train.log_every=3"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory, synthetic_root) -> Path:
    """The same run, uninterrupted."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    result = cli("train.py", *_args(synthetic_root), f"hydra.run.dir={run_dir}", cwd=run_dir.parent)
    assert result.code == 0, result.err
    return run_dir


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_same_run(run_dir: Path, reference: Path) -> None:
    """Bit-identical final parameters, identical test accuracies and training curve."""
    assert same_parameters(final_parameters(run_dir), final_parameters(reference))
    a = json.loads((run_dir / "results.json").read_text())
    b = json.loads((reference / "results.json").read_text())
    assert a["per_mode"] == b["per_mode"] and a["overall"] == b["overall"] and a["iterations"] == {"all": 8}
    assert _losses(run_dir) == _losses(reference)
    assert [json.loads(x)["iteration"] for x in (run_dir / "metrics.jsonl").read_text().splitlines()] == [3, 6, 8]


def _resume(run_dir: Path, tmp_path: Path) -> None:
    result = cli("train.py", f"resume={run_dir}", cwd=tmp_path)
    assert result.code == 0, result.err
    assert f"resumed from {run_dir}/checkpoints/last.pt" in result.out


def test_sigkill_while_writing_a_checkpoint(tmp_path, synthetic_root, reference):
    """Killed half-way through writing last.pt (iteration 4): the previous last.pt is intact."""
    run = tmp_path / "run"
    patch = """
        import io
        import kml.engine.checkpoints as checkpoints

        real_write, writes = checkpoints.atomic_write, []

        def write_half_then_hang(path, write):
            if path.name == "last.pt":
                writes.append(path)
                if len(writes) == 2:
                    def half(f):
                        buffer = io.BytesIO()
                        write(buffer)
                        f.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                        f.flush()
                        os.fsync(f.fileno())
                        hang()
                    return real_write(path, half)
            return real_write(path, write)

        checkpoints.atomic_write = write_half_then_hang
    """
    proc, marker = start_driver(tmp_path, "train.py", [*_args(synthetic_root), f"hydra.run.dir={run}"], patch)
    wait_for(marker.exists, proc, "the checkpoint write")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    folder = run / "checkpoints"
    torn = list(folder.glob(".last.pt.*.tmp"))
    assert len(torn) == 1 and torn[0].stat().st_size > 0  # killed mid-write indeed
    assert load_checkpoint(folder / "last.pt")["iteration"] == 2  # the previous one, whole
    assert load_checkpoint(folder / "iter_00000004.pt")["iteration"] == 4
    assert not (run / "results.json").exists()

    _resume(run, tmp_path)
    _assert_same_run(run, reference)
    assert not list(folder.glob(".*.tmp"))  # the torn temporary file was cleaned up


def test_sigkill_during_evaluation(tmp_path, synthetic_root, reference):
    """Killed after training, before results.json: resume only evaluates."""
    run = tmp_path / "run"
    patch = """
        import kml.engine.runs as runs
        runs._evaluate_mode = lambda *args, **kwargs: hang()
    """
    proc, marker = start_driver(tmp_path, "train.py", [*_args(synthetic_root), f"hydra.run.dir={run}"], patch)
    wait_for(marker.exists, proc, "the evaluation")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert not (run / "results.json").exists()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 8
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())

    _resume(run, tmp_path)
    _assert_same_run(run, reference)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == checkpoints


def test_ctrl_c_saves_a_checkpoint_and_resumes_exactly(tmp_path, synthetic_root, reference):
    """A real SIGINT from outside, at whatever point of an iteration it lands."""
    run = tmp_path / "run"
    patch = """
        import kml.engine.trainer as trainer

        sample = trainer.Trainer._sample

        def slow_sample(self, num_tasks):  # slow iterations, same numbers
            time.sleep(0.25)
            return sample(self, num_tasks)

        trainer.Trainer._sample = slow_sample
    """
    proc, _ = start_driver(tmp_path, "train.py", [*_args(synthetic_root), f"hydra.run.dir={run}"], patch)
    wait_for((run / "checkpoints" / "iter_00000002.pt").exists, proc, "the first checkpoint")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 130, err
    stopped = int(re.fullmatch(r"error: interrupted at iteration (\d+); .*\n", err).group(1))
    assert err == (
        f"error: interrupted at iteration {stopped}; checkpoint saved to {run}/checkpoints/last.pt; "
        f"continue with: python scripts/train.py resume={run}\n"
    )
    assert "Traceback" not in out + err
    assert 2 <= stopped < 8
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == stopped
    assert not (run / "results.json").exists()

    _resume(run, tmp_path)
    _assert_same_run(run, reference)


@pytest.fixture
def terminal_sigint():
    """SIGINT raising KeyboardInterrupt, as in a terminal (in a background job it starts out
    ignored and Python installs no handler for it)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _signal_at_sample(monkeypatch, at_call: int, signals: list[int]) -> None:
    """Send ``signals`` to this process from inside the ``at_call``-th episode sampling
    (that is, in the middle of an iteration)."""
    import kml.engine.trainer as trainer

    sample, calls = trainer.Trainer._sample, [0]

    def sample_and_signal(self, num_tasks):
        calls[0] += 1
        if calls[0] == at_call:
            for sig in signals:
                os.kill(os.getpid(), sig)
        return sample(self, num_tasks)

    monkeypatch.setattr(trainer.Trainer, "_sample", sample_and_signal)


def test_sigterm_finishes_the_iteration_saves_and_resumes_exactly(tmp_path, synthetic_root, reference, monkeypatch):
    run = tmp_path / "run"
    _signal_at_sample(monkeypatch, 3, [signal.SIGTERM])
    result = cli("train.py", *_args(synthetic_root), f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.code == 130
    assert result.err == (
        f"error: interrupted at iteration 3; checkpoint saved to {run}/checkpoints/last.pt; "
        f"continue with: python scripts/train.py resume={run}\n"
    )
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 3
    monkeypatch.undo()
    _resume(run, tmp_path)
    _assert_same_run(run, reference)


def test_a_second_ctrl_c_stops_at_once_without_saving(tmp_path, synthetic_root, monkeypatch, terminal_sigint):
    run = tmp_path / "run"
    _signal_at_sample(monkeypatch, 3, [signal.SIGINT, signal.SIGINT])
    result = cli("train.py", *_args(synthetic_root), f"hydra.run.dir={run}", cwd=tmp_path)
    last = run / "checkpoints" / "last.pt"
    assert result.code == 130
    assert result.err == (
        f"error: interrupted at once during iteration 3, without saving; the last checkpoint {last} is kept; "
        f"continue with: python scripts/train.py resume={run}\n"
    )
    assert load_checkpoint(last)["iteration"] == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["iter_00000002.pt", "last.pt"]


def test_sigkill_during_data_preparation_leaves_no_dataset(tmp_path, data_builders, synthetic_root):
    archive = data_builders.aircraft(tmp_path / "src", per_class=2)
    root = tmp_path / "data"
    args = ["dataset=aircraft", f"source={archive}", f"data.root={root}", "image_size=16", "verbose=false"]
    patch = """
        import kml.data.prepare as prepare

        real_write, splits = prepare._write_split, []

        def write_split(folder, split, shape, blocks):
            splits.append(split)
            if len(splits) == 2:  # train.npy written, val.npy not yet
                hang()
            return real_write(folder, split, shape, blocks)

        prepare._write_split = write_split
    """
    proc, marker = start_driver(tmp_path, "prepare_data.py", args, patch)
    wait_for(marker.exists, proc, "the preparation")
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    target = root / "aircraft" / "16"
    assert not target.exists()
    assert [p.name for p in (root / "aircraft").iterdir() if p.name.startswith(".tmp-")]  # killed mid-way indeed
    result = cli("train.py", "mode=aircraft", f"data.root={root}", *TINY, "hydra.run.dir=run", cwd=tmp_path)
    assert result.code == 1
    assert result.err.startswith(f"error: dataset 'aircraft' is not prepared at {target}; run: ")

    again = cli("prepare_data.py", *args, cwd=tmp_path)
    assert again.code == 0, again.err
    assert (target / "manifest.json").is_file()
    assert [p.name for p in (root / "aircraft").iterdir()] == ["16"]  # the torn folder is gone


def test_two_runs_at_once_under_one_output_root(tmp_path, synthetic_root):
    args = [f"data.root={synthetic_root}", *TINY, "train.iterations=2"]
    env = dict(os.environ, PYTHONUNBUFFERED="1", HYDRA_FULL_ERROR="0")
    procs = [
        subprocess.Popen([sys.executable, str(SCRIPTS / "train.py"), *args], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
    runs = sorted((tmp_path / "outputs").glob("*/*"))
    assert len(runs) == 2
    for run in runs:
        assert re.fullmatch(r"\d\d-\d\d-\d\d_synthetic_protonet-kml_[0-9a-f]{6}", run.name), run.name
        assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 2
    a, b = (json.loads((run / "results.json").read_text()) for run in runs)
    assert a["overall"] == b["overall"]  # same seed, same numbers, separate files
    assert same_parameters(final_parameters(runs[0]), final_parameters(runs[1]))
