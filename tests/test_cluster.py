"""Runs on clusters: ``resume=auto`` (start or continue), SIGTERM / SIGUSR1 from SLURM,
other launchers' signal handlers left alone, sweeps through Hydra's submitit launcher
and the Optuna sweeper on the returned validation accuracy."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import yaml
from fixtures_engine import TINY, TINY_MAML, run_script
from reliability_support import cli, final_parameters, same_parameters

from kml.engine.checkpoints import load_checkpoint

#: a tiny MMAML+KML run: 8 iterations, checkpoints every 2, a metrics line every 3
ARGS = ["learner=maml", "modulation=kml", *TINY, *TINY_MAML, "train.iterations=8", "train.checkpoint_every=2",
        "train.log_every=3"]


def _losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _signal_at_sample(monkeypatch, at_call: int, sig: int) -> None:
    """Send ``sig`` to this process in the middle of the ``at_call``-th iteration."""
    import kml.engine.trainer as trainer

    sample, calls = trainer.Trainer._sample, [0]

    def sample_and_signal(self, num_tasks):
        calls[0] += 1
        if calls[0] == at_call:
            os.kill(os.getpid(), sig)
        return sample(self, num_tasks)

    monkeypatch.setattr(trainer.Trainer, "_sample", sample_and_signal)


def test_resume_auto_twice_on_one_folder_equals_an_uninterrupted_run(synthetic_root, tmp_path, monkeypatch):
    """A SLURM job ends with SIGUSR1 (sbatch --signal=USR1@<s>); the requeued job runs the
    same command and continues: the result is the uninterrupted run's."""
    args = [*ARGS, f"data.root={synthetic_root}"]
    reference = tmp_path / "reference"
    assert cli("train.py", *args, f"hydra.run.dir={reference}", cwd=tmp_path).code == 0

    run = tmp_path / "run"
    _signal_at_sample(monkeypatch, 3, signal.SIGUSR1)
    first = cli("train.py", *args, "resume=auto", f"hydra.run.dir={run}", cwd=tmp_path)
    assert first.code == 130, first.err
    assert first.err.startswith(f"error: interrupted at iteration 3; checkpoint saved to {run}/checkpoints/last.pt")
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == 3
    monkeypatch.undo()

    second = cli("train.py", *args, "resume=auto", f"hydra.run.dir={run}", cwd=tmp_path)
    assert second.code == 0, second.err
    assert f"resume=auto: continuing the run in {run}" in second.out
    assert f"resumed from {run}/checkpoints/last.pt at iteration 3" in second.out
    assert same_parameters(final_parameters(run), final_parameters(reference))
    assert _losses(run) == _losses(reference)
    a, b = (json.loads((d / "results.json").read_text()) for d in (run, reference))
    assert a["per_mode"] == b["per_mode"] and a["iterations"] == {"all": 8}


def test_resume_auto_refuses_another_config_and_a_changing_run_directory(synthetic_root, tmp_path):
    args = [*TINY, f"data.root={synthetic_root}", "train.iterations=2"]
    run = tmp_path / "run"
    assert cli("train.py", *args, "resume=auto", f"hydra.run.dir={run}", cwd=tmp_path).code == 0
    before = load_checkpoint(run / "checkpoints" / "last.pt")

    other = cli("train.py", *args, "episode.shots=2", "resume=auto", f"hydra.run.dir={run}", cwd=tmp_path)
    assert other.code == 1 and other.err.splitlines() == [
        f"error: resume=auto: {run} holds a run with a different config (episode.shots is 1 in the run but 2 now); "
        "run the same command as that run to continue it, or choose another hydra.run.dir for this config"
    ]
    assert load_checkpoint(run / "checkpoints" / "last.pt")["iteration"] == before["iteration"]

    default_dir = cli("train.py", *args, "resume=auto", cwd=tmp_path)
    assert default_dir.code == 1 and default_dir.err.splitlines() == [
        "error: resume=auto continues the run found in its run directory, but hydra.run.dir is not set and the "
        "default changes with every start (it holds the time); pass hydra.run.dir=<a folder>, the same on every start"
    ]
    assert not list(tmp_path.glob("outputs/*/*/checkpoints"))  # nothing trained


def test_a_launchers_own_signal_handlers_are_kept():
    """submitit installs SIGTERM and SIGUSR2 handlers for its checkpoint-and-requeue: the
    entry point and the training loop take over only signals still at their default."""
    from kml.cli import terminate_as_interrupt
    from kml.engine.trainer import _StopRequest

    def launchers(signum, frame):  # e.g. submitit's SIGTERM "bypass"
        pass

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGUSR1)}
    try:
        signal.signal(signal.SIGTERM, launchers)
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        terminate_as_interrupt()
        assert signal.getsignal(signal.SIGTERM) is launchers
        usr1 = signal.getsignal(signal.SIGUSR1)
        assert getattr(usr1, "kml_interrupt", False)  # plain sbatch: USR1 stops the run
        with _StopRequest() as stop:
            assert signal.getsignal(signal.SIGTERM) is launchers
            os.kill(os.getpid(), signal.SIGUSR1)  # deferred to the end of the iteration
            assert stop.requested
        assert signal.getsignal(signal.SIGUSR1) is usr1
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


#: loaded by every Python process of the sweep (PYTHONPATH): in a submitit job, the MAML
#: job's first attempt sends itself submitit's pre-emption signal (SIGUSR2) in the middle
#: of its second iteration, after the checkpoint of the first
PRE_EMPT = """
import os, signal
from pathlib import Path

if os.environ.get("SUBMITIT_LOCAL_JOB_ID"):
    import kml.engine.trainer as trainer

    marker, sample = Path({marker!r}), trainer.Trainer._sample

    def sample_and_signal(self, num_tasks):
        if self.cfg.learner.name == "maml" and self.iteration == 1 and not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGUSR2)
        return sample(self, num_tasks)

    trainer.Trainer._sample = sample_and_signal
"""


def test_a_two_job_sweep_through_the_submitit_local_launcher(synthetic_root, tmp_path):
    """Each job is a process of its own (as on SLURM, where submitit_slurm sends them). The
    MAML job is pre-empted: submitit (whose signal handlers kml keeps) requeues it, and the
    requeued job continues from its checkpoint with resume=auto."""
    marker, shim = tmp_path / "pre-empted", tmp_path / "shim" / "sitecustomize.py"
    shim.parent.mkdir()
    shim.write_text(PRE_EMPT.format(marker=str(marker)))
    path = os.pathsep.join(p for p in (str(shim.parent), os.environ.get("PYTHONPATH", "")) if p)
    run_script("train.py", "-m", "hydra/launcher=submitit_local", "learner=maml,protonet", "modulation=none",
               f"data.root={synthetic_root}", *TINY, "train.iterations=2", "train.checkpoint_every=1", "resume=auto",
               "hydra.sweep.dir=sweep", cwd=tmp_path, timeout=600, env={"PYTHONPATH": path})
    sweep = tmp_path / "sweep"
    jobs = sorted(p.parent for p in sweep.glob("*/results.json"))
    assert [p.name for p in jobs] == ["0_synthetic_maml-none", "1_synthetic_protonet-none"]
    assert sorted(json.loads((p / "results.json").read_text())["method"] for p in jobs) == ["MAML", "ProtoNet"]
    assert (sweep / ".submitit").is_dir()  # submitit's own records of the jobs
    assert marker.exists()  # the MAML job was pre-empted ...
    log = (jobs[0] / "train.log").read_text()
    assert f"resumed from {jobs[0]}/checkpoints/last.pt at iteration 1" in log  # ... requeued and continued
    assert json.loads((jobs[0] / "results.json").read_text())["iterations"] == {"all": 2}
    assert "resumed" not in (jobs[1] / "train.log").read_text()


def test_the_optuna_sweeper_maximises_the_validation_accuracy(synthetic_root, tmp_path):
    args = [f"data.root={synthetic_root}", *TINY, "train.iterations=2", "eval.val_every=2",
            "eval.val_tasks_per_mode=4", "hydra.sweep.dir=study"]
    # the grid sampler: two trials, two learning rates far enough apart to score differently
    result = cli("train.py", "-m", "hydra/sweeper=optuna", "hydra/sweeper/sampler=grid", "hydra.sweeper.n_trials=2",
                 "hydra.sweeper.n_jobs=1", "train.lr=choice(0.0001,0.3)", *args, cwd=tmp_path)
    assert result.code == 0, result.err
    values = [json.loads(p.read_text())["val_accuracy"] for p in sorted((tmp_path / "study").glob("*/results.json"))]
    assert len(values) == 2 and all(isinstance(v, float) for v in values)  # a number from each trial
    assert values[0] != values[1]
    best = yaml.safe_load((tmp_path / "study" / "optimization_results.yaml").read_text())
    assert best["best_value"] == max(values)  # direction: maximize

    no_validation = cli("train.py", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=2",
                        "train.lr=interval(0.0001,0.01)", *args[:-3], "hydra.sweep.dir=nothing", cwd=tmp_path)
    assert no_validation.code == 1 and no_validation.err.splitlines() == [
        "error: hydra/sweeper=optuna tunes on what python scripts/train.py returns, the final validation accuracy, "
        "but validation is off; set eval.val_every=<iterations> (e.g. eval.val_every=500): tuning on test accuracy "
        "is not allowed"
    ]
    assert not list((tmp_path / "nothing").glob("*/checkpoints"))


def test_a_sweep_prints_hydras_messages_and_no_other_librarys(synthetic_root, tmp_path):
    """A fresh process (the sweeper imports optuna, which loads alembic's plugins): Hydra's
    own lines are printed, the INFO lines of the libraries it imports are not."""
    proc = run_script("train.py", "-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=1", "train.lr=choice(0.001)",
                      f"data.root={synthetic_root}", *TINY, "train.iterations=1", "eval.val_every=1",
                      "eval.val_tasks_per_mode=2", "eval.tasks_per_mode=2", "hydra.sweep.dir=study", cwd=tmp_path)
    hydra_lines = [line for line in proc.stdout.splitlines() if "[HYDRA]" in line]
    assert any("Launching 1 jobs locally" in line for line in hydra_lines)
    assert any("Best value:" in line for line in hydra_lines)
    assert not [line for line in hydra_lines if "setup plugin" in line], hydra_lines


def test_a_missing_plugin_names_the_extra_that_installs_it():
    from hydra.errors import MissingConfigException

    from kml.cli import describe_hydra_error

    err = MissingConfigException("In 'config': Could not find 'hydra/launcher/submitit_slurm'",
                                 missing_cfg_file="hydra/launcher/submitit_slurm", options=["basic"])
    assert describe_hydra_error(err) == (
        "hydra/launcher=submitit_slurm needs Hydra's submitit launcher plugin, which is not installed; "
        'install it with: pip install "kernel-modulation[slurm]"'
    )
