"""A whole run: run directory, training (single learner or Multi-* specialists),
evaluation on fixed test tasks, ``results.json``, plots and the printed table."""

from __future__ import annotations

import copy
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

import kml
from kml.config import RunConfig, validate
from kml.engine.builders import (
    build_learner_from_config,
    resolve_device,
    specialist_config,
    tasksets_for,
    use_vectorized,
)
from kml.engine.checkpoints import CheckpointError, list_checkpoints, load_checkpoint
from kml.engine.distributed import DistributedContext, init_distributed
from kml.engine.evaluation import ModeEvaluation, evaluate_batches, pooled_summary
from kml.engine.trainer import Trainer, TrainingInterrupted
from kml.errors import KmlError
from kml.io import atomic_write_json, atomic_write_text, remove_stale_temporaries
from kml.learners import method_name

__all__ = [
    "load_config_file",
    "resume_config",
    "prepare_run_dir",
    "run_training",
    "evaluate_run",
    "eval_task_batches",
    "results_table",
]

# keys a resumed run may change; anything else must match the run's saved config
RESUMABLE_KEYS = (
    "train.iterations",
    "train.checkpoint_every",
    "train.log_every",
    "train.progress",
    "train.vectorized",
    "device",
    "data.root",
    "eval",
    "resume",
)


def load_config_file(path: str | Path) -> DictConfig:
    """A saved run config, checked against the schema (unknown keys are rejected)."""
    try:
        loaded = OmegaConf.load(path)
        cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), loaded)
    except Exception as err:  # omegaconf raises several error types
        raise KmlError(f"{path} is not a valid kml run config ({str(err).splitlines()[0]})") from None
    OmegaConf.set_struct(cfg, True)
    return cfg


def _differences(a, b, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two plain containers."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _allowed_on_resume(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in RESUMABLE_KEYS)


def resume_config(saved: DictConfig, composed: DictConfig, overrides: list[str]) -> DictConfig:
    """The config of a resumed run: the run's saved config, plus the command line's
    overrides of resumable keys (``train.iterations``, ``device``, ``eval.*``, ...).

    Raises:
        KmlError: an override changes anything else (listing each differing key with
            the run's and the new value).
    """
    saved_plain = OmegaConf.to_container(saved, resolve=True)
    composed_plain = OmegaConf.to_container(composed, resolve=True)
    merged = copy.deepcopy(saved)
    conflicts = []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key.startswith("hydra") or key == "resume":
            continue
        if key in ("learner", "modulation", "mode"):
            # a config-group choice: compare the choice itself
            before, after = saved[key].name, composed[key].name
            if before != after:
                conflicts.append(f"{key} is {before!r} in the run but {after!r} now")
            continue
        for top in [key]:
            a = OmegaConf.select(OmegaConf.create(saved_plain), top)
            b = OmegaConf.select(OmegaConf.create(composed_plain), top)
            a = OmegaConf.to_container(a) if isinstance(a, DictConfig) else a
            b = OmegaConf.to_container(b) if isinstance(b, DictConfig) else b
            for diff in _differences(a, b, top + "."):
                if _allowed_on_resume(diff):
                    OmegaConf.update(merged, diff, OmegaConf.select(composed, diff), merge=False)
                elif not _allowed_on_resume(diff):
                    conflicts.append(
                        f"{diff} is {OmegaConf.select(saved, diff)!r} in the run but {OmegaConf.select(composed, diff)!r} now"
                    )
    if conflicts:
        raise KmlError(
            "resume points at a run with a different config: "
            + "; ".join(sorted(set(conflicts)))
            + ". Drop these overrides to resume it, or start a new run without resume="
        )
    merged.resume = composed.resume
    return merged


def _git(*args: str) -> str | None:
    try:
        root = Path(kml.__file__).resolve().parent.parent
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False)
        return out.stdout.strip() if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _git_commit() -> str | None:
    return _git("rev-parse", "HEAD") or None


def _git_dirty() -> bool | None:
    """Whether the working tree has uncommitted changes to tracked files (None: no git)."""
    status = _git("status", "--porcelain", "--untracked-files=no")
    return None if status is None else bool(status)


class RunLock:
    """An exclusive lock on a run directory (``<run_dir>/.lock``) for as long as a run
    writes to it: a second run, or a ``resume=`` of a run that is still going, is
    refused instead of interleaving its writes. The operating system releases it
    when the process ends, however it ends (no stale locks after a kill)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / ".lock"
        self._file = None

    def acquire(self) -> "RunLock":
        import fcntl

        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise KmlError(
                f"{self.path.parent} is in use by another run ({owner}); wait for it to finish "
                "(or stop it), or choose another output directory"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._file = handle
        return self

    def release(self) -> None:
        if self._file is not None:
            self._file.close()  # closing the file releases the lock
            self._file = None


def _check_writable(
    run_dir: Path,
    fix: str = "choose a writable place with hydra.run.dir=/path/to/run (or run from a writable folder)",
) -> None:
    run_dir = Path(run_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=run_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise KmlError(
            f"output directory {run_dir} is not writable ({err.strerror}); {fix}"
        ) from None


def prepare_run_dir(run_dir: Path, cfg: DictConfig, resuming: bool, ctx: DistributedContext) -> None:
    """Create/check the run directory and record the config and provenance."""
    _check_writable(run_dir)
    if not ctx.is_main:
        return
    config_path = run_dir / "config.yaml"
    if config_path.exists() and not resuming:
        raise KmlError(
            f"{run_dir} already holds a run (config.yaml exists); pass resume={run_dir} to continue it, "
            "or choose another output directory"
        )
    atomic_write_text(config_path, OmegaConf.to_yaml(cfg, resolve=True))
    info_path = run_dir / "run_info.json"
    info = {
        "kml_version": kml.__version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "git_commit": _git_commit(),
        "git_dirty": _git_dirty(),
        "seed": int(cfg.train.seed),
        "hostname": socket.gethostname(),
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
    }
    if info_path.exists():
        previous = json.loads(info_path.read_text())
        info = {**previous, "resumed": previous.get("resumed", []) + [info["started"]]}
    atomic_write_json(info_path, info)


def eval_task_batches(split_sampler, mode: str, cfg: DictConfig):
    """The fixed, seeded evaluation meta-batches of ``mode`` (same for every method)."""
    if split_sampler is None:
        raise KmlError(
            f"the {cfg.eval.split} split of {cfg.mode.name} has no classes; choose another eval.split"
        )
    return split_sampler.eval_tasks(
        mode, num_tasks=int(cfg.eval.tasks_per_mode), batch_size=int(cfg.eval.batch_size), seed=int(cfg.eval.seed)
    )


def _evaluate_mode(learner, split_sampler, mode: str, cfg: DictConfig, vectorized: bool, ctx) -> ModeEvaluation:
    return evaluate_batches(
        learner,
        eval_task_batches(split_sampler, mode, cfg),
        ways=int(cfg.episode.ways),
        vectorized=vectorized,
        ctx=ctx,
        total=int(cfg.eval.tasks_per_mode),
        description=f"eval {mode}",
        progress=bool(cfg.train.progress),
        precision=str(cfg.train.precision),
    )


def _build_results(cfg: DictConfig, evaluations: dict[str, ModeEvaluation], iterations: dict[str, int]) -> dict:
    return {
        "method": method_name(cfg.learner.name, cfg.modulation.name, bool(cfg.multi)),
        "mode": cfg.mode.name,
        "overall": pooled_summary(evaluations.values()),
        "per_mode": {mode: ev.summary() for mode, ev in evaluations.items()},
        "eval": {
            "split": cfg.eval.split,
            "seed": int(cfg.eval.seed),
            "tasks_per_mode": int(cfg.eval.tasks_per_mode),
            "ways": int(cfg.episode.ways),
            "shots": int(cfg.episode.shots),
            "queries": int(cfg.episode.queries),
        },
        "iterations": iterations,
        "config": OmegaConf.to_container(cfg, resolve=True),
    }


def results_table(results: dict) -> str:
    """The per-mode markdown table of one run's results."""
    rows = ["| mode | accuracy (%) | 95% CI | tasks |", "|---|---|---|---|"]
    for mode, r in results["per_mode"].items():
        rows.append(f"| {mode} | {r['accuracy']:.2f} | +-{r['ci95']:.2f} | {r['tasks']} |")
    o = results["overall"]
    rows.append(f"| **overall** | **{o['accuracy']:.2f}** | +-{o['ci95']:.2f} | {o['tasks']} |")
    return "\n".join(rows)


def _write_outputs(run_dir: Path, cfg: DictConfig, results: dict, evaluations: dict[str, ModeEvaluation]) -> None:
    from kml.engine import reporting

    atomic_write_json(run_dir / "results.json", results)
    reporting.write_run_plots(run_dir, results, evaluations)


def _train_one(
    cfg: DictConfig,
    run_dir: Path,
    device: torch.device,
    ctx: DistributedContext,
    vectorized: bool,
    mode: str | None,
    seed: int,
    log,
    tasksets=None,
):
    """Build, restore (if a checkpoint exists) and train one learner; return it with its tasksets."""
    if tasksets is None:
        tasksets = _checked_tasksets(cfg, device, seed)
    mode_names = list(tasksets.train.mode_names)
    torch.manual_seed(seed)
    learner = build_learner_from_config(cfg).to(device)
    trainer = Trainer(
        cfg,
        learner,
        tasksets.train,
        run_dir,
        device,
        mode_names,
        vectorized=vectorized,
        mode=mode,
        ctx=ctx,
        description=f"train {mode}" if mode else "train",
    )
    last = run_dir / "checkpoints" / "last.pt"
    if ctx.is_main:
        for folder in (run_dir, run_dir / "checkpoints"):
            remove_stale_temporaries(folder)  # left by a run killed while writing
    if last.is_file():
        state = _load_for_resume(last, device)
        trainer.load_state_dict(state, str(last))
        log(f"resumed from {last} at iteration {trainer.iteration}")
    elif (run_dir / "metrics.jsonl").exists() and ctx.is_main:
        (run_dir / "metrics.jsonl").unlink()
    trainer.fit()
    return learner, tasksets, trainer.iteration


def _checked_tasksets(cfg: DictConfig, device, seed: int):
    """The run's samplers; a mixture whose training split has no classes is a user error."""
    tasksets = tasksets_for(cfg, device, seed=seed)
    if tasksets.train is None:
        datasets = list(cfg.mode.datasets)
        names = ", ".join(datasets)
        which = datasets[0] if len(datasets) == 1 else "<name>"
        raise KmlError(
            f"the train split of {names} has no classes (empty prepared dataset); prepare it again with "
            f"python scripts/prepare_data.py dataset={which} data.root={cfg.data.root} "
            f"image_size={cfg.data.image_size} force=true, or choose another mode"
        )
    return tasksets


def _load_for_resume(last: Path, device) -> dict:
    """``last.pt`` of a run being resumed; if it is unreadable, say how to resume from an
    earlier numbered checkpoint."""
    earlier = list(list_checkpoints(last.parent.parent).values())
    fix = (
        f"to resume from the latest numbered checkpoint instead, run: cp {earlier[-1]} {last}"
        if earlier
        else "no numbered checkpoint is left to resume from: start a new run"
    )
    try:
        return load_checkpoint(last, map_location=device, fix=fix)
    except CheckpointError as err:
        raise CheckpointError(f"cannot resume: {err}") from None


def run_training(cfg: DictConfig, run_dir: str | Path, overrides: list[str] | None = None, log=print) -> dict:
    """Meta-train and evaluate as ``cfg`` says, writing everything to ``run_dir``.

    With ``cfg.resume`` set, ``run_dir`` is the run to continue and ``cfg`` the
    freshly composed config (merged with the saved one by :func:`resume_config`).

    Returns:
        the ``results.json`` content.
    """
    run_dir = Path(run_dir)
    validate(cfg)  # the command line's own config first: its errors name the user's overrides
    if cfg.resume:
        run_dir = Path(cfg.resume)
        saved_path = run_dir / "config.yaml"
        if not saved_path.is_file():
            raise KmlError(
                f"resume={cfg.resume} is not a kml run directory (no config.yaml); "
                "pass the folder that scripts/train.py printed"
            )
        cfg = resume_config(load_config_file(saved_path), cfg, overrides or [])
    validate(cfg)
    ctx = init_distributed(cfg.device)
    # ranks may have composed different time-stamped directories: use rank 0's
    run_dir = Path(ctx.broadcast_object(str(run_dir)))
    device = resolve_device(cfg.device)
    if device.type == "cuda" and ctx.enabled:
        device = torch.device("cuda", ctx.local_rank)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(bool(cfg.train.deterministic), warn_only=True)
    torch.backends.cudnn.benchmark = not cfg.train.deterministic
    vectorized = use_vectorized(cfg.train.vectorized, device, int(cfg.data.image_size))
    seed = int(cfg.train.seed)
    # data errors (not prepared, too few classes or images) before anything is written
    tasksets = _checked_tasksets(cfg, device, seed)
    _check_writable(run_dir)
    lock = RunLock(run_dir).acquire() if ctx.is_main else None
    try:
        results = _run_locked(cfg, run_dir, device, ctx, vectorized, seed, tasksets, log)
        # every rank waits for rank 0's writing, then leaves the group together (a rank
        # exiting with live gloo/NCCL threads aborts and takes the others down)
        ctx.shutdown()
        return results
    except KeyboardInterrupt:
        # outside the training loop (which saves and says so itself): e.g. during evaluation
        raise TrainingInterrupted(
            f"interrupted; the checkpoints in {run_dir / 'checkpoints'} are kept; "
            f"continue with: python scripts/train.py resume={run_dir}"
        ) from None
    finally:
        if lock is not None:
            lock.release()


def _run_locked(cfg, run_dir: Path, device, ctx, vectorized: bool, seed: int, tasksets, log) -> dict:
    prepare_run_dir(run_dir, cfg, resuming=bool(cfg.resume), ctx=ctx)
    say = log if ctx.is_main else (lambda *_: None)
    method = method_name(cfg.learner.name, cfg.modulation.name, bool(cfg.multi))
    say(f"{method} on {cfg.mode.name} ({', '.join(cfg.mode.datasets)}), "
        f"{cfg.episode.ways}-way {cfg.episode.shots}-shot, device {device}, "
        f"{'batched tasks' if vectorized else 'per-task loop'}; run directory: {run_dir}")

    evaluations: dict[str, ModeEvaluation] = {}
    iterations: dict[str, int] = {}
    if not cfg.multi:
        learner, tasksets, iteration = _train_one(cfg, run_dir, device, ctx, vectorized, None, seed, say, tasksets)
        split_sampler = getattr(tasksets, cfg.eval.split)
        for mode in tasksets.train.mode_names:
            evaluations[mode] = _evaluate_mode(learner, split_sampler, mode, cfg, vectorized, ctx)
        iterations = {"all": iteration}
    else:
        for k, mode in enumerate(list(tasksets.train.mode_names)):
            spec_cfg = specialist_config(cfg, mode)
            spec_dir = run_dir / "specialists" / mode
            _check_writable(spec_dir)
            learner, tasksets, iteration = _train_one(spec_cfg, spec_dir, device, ctx, vectorized, mode, seed + k, say)
            split_sampler = getattr(tasksets, cfg.eval.split)
            evaluations[mode] = _evaluate_mode(learner, split_sampler, mode, spec_cfg, vectorized, ctx)
            iterations[mode] = iteration
    results = _build_results(cfg, evaluations, iterations)
    if ctx.is_main:
        _write_outputs(run_dir, cfg, results, evaluations)
        say(f"\n{results['method']} on {cfg.mode.name}: {cfg.episode.ways}-way {cfg.episode.shots}-shot, "
            f"{cfg.eval.tasks_per_mode} {cfg.eval.split} tasks per mode\n")
        say(results_table(results))
        say(f"\nrun directory: {run_dir}")
    return results


def evaluate_run(
    run_dir: str | Path,
    checkpoint: int | str | None = None,
    tasks_per_mode: int | None = None,
    split: str | None = None,
    device: str = "auto",
    batch_size: int | None = None,
    progress: bool = True,
    output: str | Path | None = None,
    log=print,
) -> dict:
    """Evaluate a saved run on its fixed evaluation tasks (``scripts/eval.py``).

    Writes ``<run_dir>/eval_<checkpoint>_<split>.json`` (``checkpoint`` is ``last`` or
    the iteration), or ``output``; ``output=<run_dir>/results.json`` replaces the
    run's results and plots.
    """
    from kml.engine.checkpoints import load_run, read_run_config

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    if tasks_per_mode is not None:
        cfg.eval.tasks_per_mode = tasks_per_mode
    if split is not None:
        cfg.eval.split = split
    if batch_size is not None:
        cfg.eval.batch_size = batch_size
    cfg.train.progress = progress
    cfg.device = device
    validate(cfg)
    torch_device = resolve_device(device)
    vectorized = use_vectorized(cfg.train.vectorized, torch_device, int(cfg.data.image_size))
    ctx = DistributedContext()
    evaluations: dict[str, ModeEvaluation] = {}
    iterations: dict[str, int] = {}
    if output is None:
        # never overwrite the training run's own results.json by default
        label = "last" if checkpoint in (None, "last") else Path(str(checkpoint)).stem
        output = run_dir / f"eval_{label}_{cfg.eval.split}.json"
    output = Path(output)
    _check_writable(output.parent, fix="pass output=/a/writable/place/eval.json")
    # a missing, corrupt, unsafe or mismatched checkpoint is reported before the data is loaded
    first = load_run(run_dir, checkpoint, device=torch_device)
    tasksets = tasksets_for(cfg, torch_device)
    modes = list(tasksets.train.mode_names)
    for mode in modes:
        if cfg.multi:
            loaded = load_run(run_dir, checkpoint, device=torch_device, mode=mode)
        else:
            loaded = first
        spec_cfg = specialist_config(cfg, mode) if cfg.multi else cfg
        evaluations[mode] = _evaluate_mode(
            loaded.learner, getattr(tasksets, cfg.eval.split), mode, spec_cfg, vectorized, ctx
        )
        iterations[mode if cfg.multi else "all"] = loaded.iteration
        if not cfg.multi:
            for other in modes[1:]:
                evaluations[other] = _evaluate_mode(
                    loaded.learner, getattr(tasksets, cfg.eval.split), other, cfg, vectorized, ctx
                )
            break
    results = _build_results(cfg, evaluations, iterations)
    results["checkpoint"] = str(loaded.checkpoint)
    if output.resolve() == (run_dir / "results.json").resolve():
        _write_outputs(run_dir, cfg, results, evaluations)
    else:
        atomic_write_json(output, results)
    log(results_table(results))
    log(f"\nwritten to {output}")
    return results
