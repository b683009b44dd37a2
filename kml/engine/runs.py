"""A whole run: training (single learner or Multi-* specialists),
evaluation on fixed test tasks, ``results.json``, plots and the printed table."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from omegaconf import DictConfig, OmegaConf

from kml.commands import command as kml_command
from kml.config import RunConfig, validate
from kml.engine.checkpoints import BEST, CheckpointError, list_checkpoints, load_checkpoint
from kml.engine.device import resolve_device, use_cuda_graphs, use_vectorized
from kml.engine.distributed import DistributedContext, init_distributed
from kml.engine.evaluation import ModeEvaluation, Validator, evaluate_batches, pooled_summary
from kml.engine.from_config import build_learner_from_config, data_provenance_for, specialist_config, tasksets_for
from kml.engine.loggers import MetricLoggers
from kml.engine.numerics import restore_determinism, set_determinism, tf32_matmul
from kml.engine.rundir import (
    AUTO_RESUME,
    RunLock,
    auto_resume_config,
    check_writable,
    load_config_file,
    prepare_run_dir,
    resume_config,
)
from kml.engine.trainer import Trainer, TrainingInterrupted
from kml.errors import KmlError
from kml.functional import per_task_conv
from kml.io import atomic_write_json, atomic_write_text, remove_stale_temporaries
from kml.learners import get_learner, method_name
from kml.options import options_or_keywords

logger = logging.getLogger(__name__)

__all__ = [
    "run_training",
    "evaluate_run",
    "validation_accuracy",
    "eval_task_batches",
    "results_table",
]

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


TASK_ACCURACIES = "task_accuracies.json"


def task_records(results: dict, evaluations: dict[str, ModeEvaluation]) -> dict:
    """The per-task test record of a run (``task_accuracies.json``): for every mode the
    evaluation task ids and each task's query accuracy (in [0, 1]) and loss. Task ``i``
    of a mode is the same task for every run with the same ``eval`` settings, so two
    runs' records pair task by task (:mod:`kml.analysis.paired`)."""
    return {
        "format": "kml-task-accuracies-v1",
        "method": results["method"],
        "mode": results["mode"],
        "eval": results["eval"],
        "image_size": results["config"]["data"]["image_size"],
        "modes": {
            mode: {
                "task_ids": list(range(len(ev.accuracies))),
                "accuracy": [round(float(a), 6) for a in ev.accuracies],
                "loss": [round(float(x), 6) for x in ev.losses],
            }
            for mode, ev in evaluations.items()
        },
    }


def write_task_records(path: Path, records: dict) -> None:
    """``task_accuracies.json``, compact (one line: 1000 tasks per mode stay small)."""
    atomic_write_text(path, json.dumps(records, separators=(",", ":")) + "\n")


def _write_outputs(run_dir: Path, cfg: DictConfig, results: dict, evaluations: dict[str, ModeEvaluation]) -> None:
    """``results.json``, ``task_accuracies.json`` and the plots of a run."""
    from kml.engine import reporting

    atomic_write_json(run_dir / "results.json", results)
    write_task_records(run_dir / TASK_ACCURACIES, task_records(results, evaluations))
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
    loggers: MetricLoggers | None = None,
):
    """Build, restore (if a checkpoint exists) and train one learner.

    Returns:
        ``(learner, tasksets, trained_iterations, tested_iteration)``: the learner holds
        the weights to test (``eval.checkpoint``: the last or the best-validated ones).
    """
    if tasksets is None:
        tasksets = _checked_tasksets(cfg, device, seed)
    mode_names = list(tasksets.train.mode_names)
    validator = _validator(cfg, tasksets, [mode] if mode else mode_names, vectorized, ctx)
    torch.manual_seed(seed)
    learner = build_learner_from_config(cfg).to(device)
    trainer = Trainer(cfg, learner, tasksets.train, run_dir, device, vectorized=vectorized, mode=mode, ctx=ctx,
                      validator=validator, loggers=loggers)
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
    tested = trainer.iteration
    if cfg.eval.checkpoint == "best":
        best = load_checkpoint(run_dir / "checkpoints" / BEST, map_location=device)
        learner.load_state_dict(best["model"])
        tested = int(best["iteration"])
    return learner, tasksets, trainer.iteration, tested


def _validator(cfg: DictConfig, tasksets, modes: list[str], vectorized: bool, ctx) -> Validator | None:
    """Validation during training (``eval.val_every > 0``) on the val split of ``modes``."""
    if not int(cfg.eval.val_every):
        return None
    have = set(tasksets.val.mode_names) if tasksets.val is not None else set()
    missing = [m for m in modes if m not in have]
    if missing:
        raise KmlError(
            f"eval.val_every={cfg.eval.val_every} validates on the val split, but {', '.join(missing)} has no val "
            "classes; set eval.val_every=0 (and eval.checkpoint=last), or prepare the dataset with a val split"
        )
    return Validator(
        tasksets.val,
        modes,
        tasks_per_mode=int(cfg.eval.val_tasks_per_mode),
        batch_size=int(cfg.eval.batch_size),
        seed=int(cfg.eval.seed),
        ways=int(cfg.episode.ways),
        vectorized=vectorized,
        precision=str(cfg.train.precision),
        ctx=ctx,
    )


def validation_accuracy(run_dir: Path, iteration: int) -> float | None:
    """The overall val accuracy (%) recorded in ``<run_dir>/metrics.jsonl`` at
    ``iteration`` (``None``: no validation there)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return None
    found = None
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "val" in record and int(record.get("iteration", -1)) == int(iteration):
            found = float(record["val"]["accuracy"])
    return found


def _checked_tasksets(cfg: DictConfig, device, seed: int):
    """The run's samplers. A mixture whose training split has no classes, a trained mode
    with no classes in the evaluation split, and a Multi-* run with a mode that has no
    train classes (no specialist can be trained for it) are user errors."""
    tasksets = tasksets_for(cfg, device, seed=seed)
    datasets = list(cfg.mode.datasets)
    if tasksets.train is None:
        names = ", ".join(datasets)
        which = datasets[0] if len(datasets) == 1 else "<name>"
        raise KmlError(
            f"the train split of {names} has no classes (empty prepared dataset); prepare it again with "
            f"{kml_command('prepare')} dataset={which} data.root={cfg.data.root} "
            f"image_size={cfg.data.image_size} force=true, or choose another mode"
        )
    split = str(cfg.eval.split)
    evaluable = getattr(tasksets, split)
    unevaluable = [m for m in tasksets.train.mode_names if evaluable is None or m not in evaluable.mode_names]
    if unevaluable:
        raise KmlError(
            f"{', '.join(unevaluable)} has no classes in the {split} split, so it could not be evaluated; "
            "choose another eval.split, or leave it out of mode.datasets"
        )
    if cfg.multi:
        untrainable = [m for m in evaluable.mode_names if m not in tasksets.train.mode_names]
        if untrainable:
            raise KmlError(
                f"multi=true trains one specialist per mode, but {', '.join(untrainable)} has no train classes "
                f"(e.g. prepared with split=test_only); leave it out of mode.datasets, or prepare it with train classes"
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


def run_training(cfg: DictConfig, run_dir: str | Path, overrides: list[str] | None = None, log=logger.info,
                 command: list[str] | None = None) -> dict:
    """Meta-train and evaluate as ``cfg`` says, writing everything to ``run_dir``.

    With ``cfg.resume`` a run directory, that is the run to continue and ``cfg`` the
    freshly composed config (merged with the saved one by :func:`resume_config`). With
    ``cfg.resume == "auto"`` the run in ``run_dir`` is continued if ``run_dir`` holds one
    of the same config (:func:`auto_resume_config`), and started there otherwise.
    ``command`` is the command ``run_info.json`` records (default: this process's,
    ``sys.argv``); a job started by a launcher records the command that launched it.

    Returns:
        the ``results.json`` content; ``results["val_accuracy"]`` is the val accuracy (%)
        of the tested weights (``None`` without validation, ``eval.val_every=0``).
    """
    run_dir = Path(run_dir)
    validate(cfg)  # the command line's own config first: its errors name the user's overrides
    resuming = bool(cfg.resume)
    saved = bool(cfg.resume and cfg.resume != AUTO_RESUME)  # the run's saved config, resumed
    if saved:
        run_dir = Path(cfg.resume)
        saved_path = run_dir / "config.yaml"
        if not saved_path.is_file():
            raise KmlError(
                f"resume={cfg.resume} is not a kml run directory (no config.yaml); "
                f"pass the folder that {kml_command('train')} printed"
            )
        cfg = resume_config(load_config_file(saved_path), cfg, overrides or [])
    validate(cfg, saved=saved)
    ctx = init_distributed(cfg.device)
    # ranks may have composed different time-stamped directories: use rank 0's
    run_dir = Path(ctx.broadcast_object(str(run_dir)))
    if cfg.resume == AUTO_RESUME:
        # rank 0 decides (before anything is written) and every rank follows, refusal included
        decision = _auto_resume(cfg, run_dir) if ctx.is_main else None
        resuming, text = ctx.broadcast_object(decision)
        if resuming is None:
            raise KmlError(text)
        if resuming:
            cfg = OmegaConf.merge(OmegaConf.structured(RunConfig), OmegaConf.create(text))
            OmegaConf.set_struct(cfg, True)
            if ctx.is_main:
                log(f"resume=auto: continuing the run in {run_dir}")
    device = resolve_device(cfg.device)
    if device.type == "cuda" and ctx.enabled:
        device = torch.device("cuda", ctx.local_rank)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # deterministic algorithms for this run only: the process's settings are restored after it
    previous = set_determinism(bool(cfg.train.deterministic))
    try:
        # the speed options of the run (per-task convolutions, TF32), for this run only too
        with per_task_conv(str(cfg.train.per_task_conv)), tf32_matmul(bool(cfg.train.tf32), device):
            return _run_with(cfg, run_dir, device, ctx, log, resuming, command)
    finally:
        restore_determinism(previous)


def _auto_resume(cfg: DictConfig, run_dir: Path) -> tuple[bool | None, str | None]:
    """``resume=auto``: ``(True, the merged config as YAML)`` when ``run_dir`` holds a run
    of the same config, ``(False, None)`` when it holds none (a new run starts there), and
    ``(None, the error message)`` when it holds a run of another config."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return False, None
    try:
        merged = auto_resume_config(load_config_file(saved_path), cfg, run_dir)
    except KmlError as err:
        return None, str(err)
    return True, OmegaConf.to_yaml(merged, resolve=True)


def _run_with(cfg: DictConfig, run_dir: Path, device: torch.device, ctx, log, resuming: bool,
              command: list[str] | None) -> dict:
    vectorized = use_vectorized(cfg.train.vectorized, device, int(cfg.data.image_size))
    use_cuda_graphs(cfg.train.cuda_graphs, device, ctx.enabled)  # a setting this device cannot honour fails here
    seed = int(cfg.train.seed)
    # a logger whose extra is missing, and data errors (not prepared, too few classes or
    # images), before anything is written
    loggers = MetricLoggers(cfg, run_dir) if ctx.is_main else None
    tasksets = _checked_tasksets(cfg, device, seed)
    check_writable(run_dir)
    lock = RunLock(run_dir).acquire() if ctx.is_main else None
    status = "failed"
    try:
        results = _run_locked(cfg, run_dir, device, ctx, vectorized, seed, tasksets, log, resuming, loggers, command)
        # every rank waits for rank 0's writing, then leaves the group together (a rank
        # exiting with live gloo/NCCL threads aborts and takes the others down)
        ctx.shutdown()
        status = "finished"
        return results
    except TrainingInterrupted:
        status = "interrupted"
        raise
    except SystemExit as err:
        # submitit exits with -1 once it has requeued the job (its checkpoint handler): the
        # run goes on in the requeued job; any other non-zero exit is a failure
        status = "interrupted" if err.code in (None, 0, -1) else "failed"
        raise
    except KeyboardInterrupt:
        status = "interrupted"
        # outside the training loop (which saves and says so itself): e.g. during evaluation
        raise TrainingInterrupted(
            f"interrupted; the checkpoints in {run_dir / 'checkpoints'} are kept; "
            f"continue with: {kml_command('train')} resume={run_dir}"
        ) from None
    finally:
        if loggers is not None:
            loggers.close(status)
        if lock is not None:
            lock.release()


def _run_locked(cfg, run_dir: Path, device, ctx, vectorized: bool, seed: int, tasksets, log, resuming: bool,
                loggers: MetricLoggers | None, command: list[str] | None) -> dict:
    data = data_provenance_for(cfg) if ctx.is_main else None
    prepare_run_dir(run_dir, cfg, resuming=resuming, ctx=ctx, data=data, command=command)
    say = log if ctx.is_main else (lambda *_: None)
    method = method_name(cfg.learner.name, cfg.modulation.name, bool(cfg.multi))
    say(f"{method} on {cfg.mode.name} ({', '.join(cfg.mode.datasets)}), "
        f"{cfg.episode.ways}-way {cfg.episode.shots}-shot, device {device}, "
        f"{'vectorised tasks' if vectorized else 'per-task loop'}; run directory: {run_dir}")

    evaluations: dict[str, ModeEvaluation] = {}
    iterations: dict[str, int] = {}
    tested: dict[str, int] = {}
    validated: list[float | None] = []  # the val accuracy of each tested learner
    if not cfg.multi:
        learner, tasksets, iteration, tested_iteration = _train_one(
            cfg, run_dir, device, ctx, vectorized, None, seed, say, tasksets, loggers
        )
        validated.append(validation_accuracy(run_dir, tested_iteration))
        split_sampler = getattr(tasksets, cfg.eval.split)
        untrained = [m for m in split_sampler.mode_names if m not in tasksets.train.mode_names]
        if untrained:
            say(f"{', '.join(untrained)}: no train classes, evaluated as unseen mode(s)")
        for mode in split_sampler.mode_names:
            evaluations[mode] = _evaluate_mode(learner, split_sampler, mode, cfg, vectorized, ctx)
        iterations, tested = {"all": iteration}, {"all": tested_iteration}
    else:
        for k, mode in enumerate(list(tasksets.train.mode_names)):
            spec_cfg = specialist_config(cfg, mode)
            spec_dir = run_dir / "specialists" / mode
            check_writable(spec_dir)
            learner, tasksets, iteration, tested_iteration = _train_one(
                spec_cfg, spec_dir, device, ctx, vectorized, mode, seed + k, say, loggers=loggers
            )
            validated.append(validation_accuracy(spec_dir, tested_iteration))
            split_sampler = getattr(tasksets, cfg.eval.split)
            evaluations[mode] = _evaluate_mode(learner, split_sampler, mode, spec_cfg, vectorized, ctx)
            iterations[mode], tested[mode] = iteration, tested_iteration
    results = _build_results(cfg, evaluations, iterations)
    results["train_modes"] = list(tasksets.train.mode_names)
    results["checkpoint"] = str(cfg.eval.checkpoint)
    results["checkpoint_iterations"] = tested
    # the tuning objective: never a test accuracy (specialists: the mean over modes, each
    # validated on the same number of tasks)
    results["val_accuracy"] = (
        sum(validated) / len(validated) if validated and all(v is not None for v in validated) else None
    )
    if ctx.is_main:
        _write_outputs(run_dir, cfg, results, evaluations)
        say(f"\n{results['method']} on {cfg.mode.name}: {cfg.episode.ways}-way {cfg.episode.shots}-shot, "
            f"{cfg.eval.tasks_per_mode} {cfg.eval.split} tasks per mode, {cfg.eval.checkpoint} checkpoint\n")
        say(results_table(results))
        say(f"\nrun directory: {run_dir}")
    return results


@dataclass(frozen=True)
class EvalOptions:
    """What :func:`evaluate_run` tests a saved run on; ``None`` keeps the run's own setting.

    Attributes:
        tasks_per_mode, split, batch_size: ``eval.tasks_per_mode``, ``eval.split`` and
            ``eval.batch_size``.
        datasets, mode_name: another mode (train on ``5mode``, test on ``gtsrb``); a Multi-*
            run is evaluated on its own modes only.
        data_root: another data folder.
        ways, shots, queries: another episode shape (5-way 5-shot); a MAML learner keeps
            its number of ways (its head has that many outputs).
    """

    tasks_per_mode: int | None = None
    split: str | None = None
    batch_size: int | None = None
    datasets: Sequence[str] | None = None
    mode_name: str | None = None
    data_root: str | None = None
    ways: int | None = None
    shots: int | None = None
    queries: int | None = None

    def shape_changed(self) -> bool:
        return (self.ways, self.shots, self.queries) != (None, None, None)


def evaluate_run(
    run_dir: str | Path,
    checkpoint: int | str | None = None,
    options: EvalOptions | None = None,
    device: str = "auto",
    progress: bool = True,
    output: str | Path | None = None,
    log=logger.info,
    **deprecated: Any,
) -> dict:
    """Evaluate a saved run on fixed, seeded tasks (``kml-eval`` / ``scripts/eval.py``).

    By default these are the run's own evaluation tasks; ``options`` (:class:`EvalOptions`)
    evaluates the trained learner on other tasks: another mode, another data folder, or
    another episode shape. The keywords of kml 0.1 (``tasks_per_mode=``, ``shots=``, ...,
    each a field of :class:`EvalOptions`) still work, with a ``DeprecationWarning``.

    Writes ``<run_dir>/eval_<checkpoint>_<split>[_<mode>][_<N>w<K>s].json`` and the
    per-task records next to it (``..._tasks.json``), or ``output``;
    ``output=<run_dir>/results.json`` replaces the run's results and plots.
    """
    from kml.engine.checkpoints import load_run, read_run_config

    options = options_or_keywords(EvalOptions, options, deprecated, "evaluate_run")
    run_dir = Path(run_dir)
    saved = read_run_config(run_dir)
    other_mode = bool(options.datasets) and list(options.datasets) != list(saved.mode.datasets)
    cfg = _eval_config(saved, options, run_dir)
    cfg.train.progress = progress
    cfg.device = device
    validate(cfg, saved=True)
    torch_device = resolve_device(device)
    output = Path(output) if output is not None else _eval_output(cfg, run_dir, checkpoint, options, other_mode)
    check_writable(output.parent, fix="pass output=/a/writable/place/eval.json")
    # a missing, corrupt, unsafe or mismatched checkpoint is reported before the data is loaded
    first = load_run(run_dir, checkpoint, device=torch_device)
    evaluations, iterations = _evaluate_modes(cfg, run_dir, checkpoint, first, torch_device)
    results = _build_results(cfg, evaluations, iterations)
    results["checkpoint"] = str(first.checkpoint)
    results["checkpoint_iterations"] = iterations
    results["train_modes"] = list(first.mode_names)
    if output.resolve() == (run_dir / "results.json").resolve():
        _write_outputs(run_dir, cfg, results, evaluations)
    else:
        atomic_write_json(output, results)
        write_task_records(output.with_name(output.stem + "_tasks.json"), task_records(results, evaluations))
    log(results_table(results))
    log(f"\nwritten to {output}")
    return results


def _eval_config(cfg: DictConfig, options: EvalOptions, run_dir: Path) -> DictConfig:
    """The saved run config with ``options`` applied.

    Raises:
        KmlError: another mode for a Multi-* run, or other ways for a MAML learner.
    """
    trained_ways = int(cfg.episode.ways)
    for key in ("tasks_per_mode", "split", "batch_size"):
        if getattr(options, key) is not None:
            cfg.eval[key] = getattr(options, key)
    if options.datasets:
        if cfg.multi and list(options.datasets) != list(cfg.mode.datasets):
            raise KmlError(
                f"{run_dir} is a Multi-* run (one specialist per trained mode: {', '.join(cfg.mode.datasets)}); "
                "it can only be evaluated on its own modes: drop mode.datasets"
            )
        cfg.mode.datasets = list(options.datasets)
        cfg.mode.name = options.mode_name or "+".join(options.datasets)
    elif options.mode_name:
        cfg.mode.name = options.mode_name
    if options.data_root is not None:
        cfg.data.root = options.data_root
    for key in ("ways", "shots", "queries"):
        if getattr(options, key) is not None:
            cfg.episode[key] = int(getattr(options, key))
    learner = get_learner(cfg.learner.name)
    if learner.uses_head and int(cfg.episode.ways) != trained_ways:
        raise KmlError(
            f"episode.ways={cfg.episode.ways}: this {learner.display_name} learner was trained {trained_ways}-way and "
            f"its head has {trained_ways} outputs; evaluate it with episode.ways={trained_ways} (ProtoNet learners "
            "take any ways)"
        )
    return cfg


def _eval_output(cfg: DictConfig, run_dir: Path, checkpoint, options: EvalOptions, other_mode: bool) -> Path:
    """The default output: never the training run's own results.json."""
    label = "last" if checkpoint in (None, "last") else Path(str(checkpoint)).stem
    name = f"eval_{label}_{cfg.eval.split}"
    if other_mode:
        name += f"_{cfg.mode.name}"
    if options.shape_changed():
        name += f"_{cfg.episode.ways}w{cfg.episode.shots}s" + (f"{cfg.episode.queries}q" if options.queries else "")
    return run_dir / f"{name}.json"


def _evaluate_modes(cfg: DictConfig, run_dir: Path, checkpoint, first, device) -> tuple[dict, dict]:
    """Each mode's evaluation (a Multi-* run: by its mode's specialist) and the iteration of
    the checkpoint that made it."""
    from kml.engine.checkpoints import load_run

    vectorized = use_vectorized(cfg.train.vectorized, device, int(cfg.data.image_size))
    split_sampler = getattr(tasksets_for(cfg, device), cfg.eval.split)
    if split_sampler is None:
        raise KmlError(
            f"the {cfg.eval.split} split of {', '.join(cfg.mode.datasets)} has no classes; choose another eval.split"
        )
    evaluations: dict[str, ModeEvaluation] = {}
    iterations: dict[str, int] = {}
    # the run's own per-task convolution, as in the evaluation at the end of its training
    with per_task_conv(str(cfg.train.per_task_conv)):
        for mode in split_sampler.mode_names:
            loaded = load_run(run_dir, checkpoint, device=device, mode=mode) if cfg.multi else first
            spec_cfg = specialist_config(cfg, mode) if cfg.multi else cfg
            evaluations[mode] = _evaluate_mode(loaded.learner, split_sampler, mode, spec_cfg, vectorized,
                                               DistributedContext())
            iterations[mode if cfg.multi else "all"] = loaded.iteration
    return evaluations, iterations
