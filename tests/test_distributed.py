"""Multi-process meta-training (torchrun, gloo, 2 CPU processes) equals one process."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from fixtures_engine import SCRIPTS, TINY, run_script

from kml.engine.checkpoints import load_checkpoint
from kml.engine.distributed import shard_bounds


def test_shard_bounds_cover_every_task_once():
    for tasks in range(1, 12):
        for world in range(1, 5):
            bounds = [shard_bounds(tasks, world, r) for r in range(world)]
            covered = [t for start, stop in bounds for t in range(start, stop)]
            assert covered == list(range(tasks))
            sizes = [stop - start for start, stop in bounds]
            assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("learner,modulation", [("maml", "kml"), ("protonet", "film")])
def test_two_gloo_processes_match_one_process(synthetic_root, tmp_path, learner, modulation):
    """The first meta-update of two processes equals one process's: each rank's share of the
    tasks, its gradients summed over ranks. Only the first update is compared parameter by
    parameter: Adam's first step is lr * sign(gradient) for every element, so the rounding
    noise of a gradient that is exactly zero in exact arithmetic (see below) becomes a full
    step, and later iterations amplify it by a factor that depends on the CPU and the
    summation order; a rank that kept its own gradients would differ by a full step everywhere."""
    args = [f"learner={learner}", f"modulation={modulation}", f"data.root={synthetic_root}", *TINY,
            "train.meta_batch_size=5", "train.iterations=2", "train.checkpoint_every=1", "train.log_every=1"]
    run_script("train.py", *args, "hydra.run.dir=single", cwd=tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(SCRIPTS / "train.py"), *args, f"hydra.run.dir={tmp_path / 'ddp'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert load_checkpoint(tmp_path / "ddp" / "checkpoints" / "last.pt")["iteration"] == 2
    single = load_checkpoint(tmp_path / "single" / "checkpoints" / "iter_00000001.pt")
    multi = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "iter_00000001.pt")
    compared = 0
    for name, value in single["model"].items():
        if _cancelled_by_batch_norm(name) or not value.is_floating_point():
            continue
        torch.testing.assert_close(multi["model"][name], value, rtol=1e-4, atol=1e-6, msg=name)
        compared += 1
    assert compared >= 8
    # both iterations' losses (all tasks of both ranks) agree with the single process's
    losses = [[json.loads(line)["loss"] for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
              for run in ("single", "ddp")]
    assert len(losses[0]) == len(losses[1]) == 2
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    # rank 0 alone wrote results, and they agree with the single process's
    a = json.loads((tmp_path / "single" / "results.json").read_text())
    b = json.loads((tmp_path / "ddp" / "results.json").read_text())
    for mode, entry in a["per_mode"].items():
        assert b["per_mode"][mode]["accuracy"] == pytest.approx(entry["accuracy"], abs=0.5)
    assert not list((tmp_path / "ddp").glob("checkpoints/*.tmp"))


def _cancelled_by_batch_norm(name: str) -> bool:
    """Conv biases (and KML's bias shifts) feed straight into batch normalisation, which
    subtracts them again: their exact gradient is zero, so what Adam does with the
    rounding noise of that zero differs between any two summation orders."""
    return name.endswith("conv.bias") or ".g3." in name


def test_ctrl_c_under_torchrun_stops_every_rank_and_resumes(synthetic_root, tmp_path):
    """Ctrl-C reaches the whole process group: all ranks stop at the same iteration,
    rank 0 saves a checkpoint, nothing hangs, and the run resumes to completion."""
    import os
    import signal
    import time

    run_dir = tmp_path / "ddp"
    args = ["learner=protonet", "modulation=kml", f"data.root={synthetic_root}", *TINY,
            "train.meta_batch_size=4", "train.iterations=100000", "train.checkpoint_every=2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         str(SCRIPTS / "train.py"), *args, f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    deadline = time.time() + 240
    while not (run_dir / "checkpoints" / "iter_00000002.pt").exists():
        assert proc.poll() is None, proc.stderr.read()[-2000:]
        assert time.time() < deadline
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired as hung:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("a rank hung after Ctrl-C") from hung
    assert proc.returncode != 0
    assert "interrupted at iteration" in err
    stopped = load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"]
    assert 2 <= stopped < 100000
    run_script("train.py", f"resume={run_dir}", f"train.iterations={stopped + 2}", cwd=tmp_path)
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["iteration"] == stopped + 2
    assert (run_dir / "results.json").is_file()
