"""Run a campaign (``scripts/reproduce.py campaign=<name>``): the missing runs are run,
interrupted ones resumed, finished ones skipped; each finished run's small records are
copied to ``results/<campaign>/<run>/``; then the transference step and the report.

A run whose record is already in ``results/`` counts as finished, so a campaign can
continue on another machine one finished run at a time (``max_runs=1``), its records
committed in between.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from kml.campaign.launch import JOB_RECORD, check_launcher, compose_launcher_config, launch_runs, train_command
from kml.campaign.plan import (
    FINISHED,
    NEW,
    PARTIAL,
    RECORD_FILES,
    RECORDED,
    PlannedRun,
    plan_campaign,
)
from kml.campaign.records import machine_description, run_code
from kml.errors import KmlError
from kml.io import atomic_write_json, atomic_write_text, read_jsonl

logger = logging.getLogger(__name__)

__all__ = [
    "TRANSFERENCE_RECORD",
    "estimate_seconds",
    "machine_description",
    "machine_paths",
    "record_run",
    "run_code",
    "run_campaign",
    "transference_entry",
]

TRANSFERENCE_RECORD = "transference.json"
DIAGNOSTICS_RECORD = "modulation_diagnostics.json"
DATA_RECORD = "data.json"


def machine_paths(cfg: DictConfig) -> dict[str, str]:
    """The folders of this machine that a campaign's records would otherwise name, each
    with the portable path a record says instead (the defaults of ``reproduce.py``)."""
    portable = {"data_root": "data", "work_dir": "outputs/campaigns", "results_dir": "results",
                "report": "docs/results.md", "figures_dir": "docs/figures"}
    paths = {}
    for key, placeholder in portable.items():
        given = str(cfg[key])
        paths[given] = placeholder
        paths[str(Path(given).resolve())] = placeholder
    paths[os.getcwd() + os.sep] = ""  # the checkout the campaign runs from
    return {path: placeholder for path, placeholder in paths.items() if path not in ("", placeholder)}


#: what may stand before a path given as a value: the start of a line, whitespace, a quote,
#: a bracket, a comma, ``=`` (``data_root=data``) or ``:`` (a YAML or JSON key's value)
_BEFORE = r"(?:(?<=^)|(?<=[\s\"'\[,=:]))"
#: what may follow it: the end, a separator (a path below it), a quote, a closing bracket,
#: a comma or a line end, but not a word, ``:`` (a key) or a space (prose)
_AFTER = r"(?=$|[/\\\"',\]}\r\n])"


def _portable(text: str, paths: dict[str, str]) -> str:
    """``text`` with each machine path replaced by its portable path, longest first.

    A path is replaced only where it stands as a value of its own: a relative
    ``work_dir=work`` rewrites ``run_dir: work/...`` but not ``/opt/work/...``, ``the work
    tree`` or a key ``work:``. The checkout's own folder (a prefix ending in a separator)
    is removed wherever it starts a path."""
    for path in sorted(paths, key=len, reverse=True):
        if path.endswith(("/", os.sep)):
            pattern = r"(?<![\w.-])" + re.escape(path)
        else:
            pattern = _BEFORE + re.escape(path) + _AFTER
        text = re.sub(pattern, lambda _, new=paths[path]: new, text, flags=re.MULTILINE)
    return text


def _check_code(run: PlannedRun, allow_dirty: bool, allow_commit_change: bool) -> None:
    """Refuse to train (or record) ``run`` from uncommitted code, or to resume it on another
    commit than it was trained on, unless told to."""
    from kml.engine.rundir import code_state

    here = code_state()
    if here["git_dirty"] and not allow_dirty:
        raise KmlError(
            f"{run.run_id}: the work tree has uncommitted changes, so the record would not say which code made it; "
            "commit them (or run from a clean `git worktree`), or pass allow_dirty=true to record it marked as such"
        )
    if run.status() != PARTIAL:
        return
    before = run_code(run.run_dir).get("commits", [])
    if before and before[-1] != here["git_commit"] and not allow_commit_change:
        raise KmlError(
            f"{run.run_id} was trained at commit {str(before[-1])[:12]} and this checkout is at "
            f"{str(here['git_commit'])[:12]}; resume it from that commit, or pass allow_commit_change=true to "
            "continue it here (its record is then marked as trained on two commits)"
        )


def record_run(
    run: PlannedRun,
    seconds: float | None,
    machine: dict,
    paths: dict[str, str] | None = None,
    allow_dirty: bool = False,
) -> Path:
    """Copy a finished run's small records (never checkpoints) to ``run.record_dir``, with
    the machine's folders in them (``paths``, see :func:`machine_paths`) made portable, so
    committed records name no one's file system. ``record.json`` says which code trained
    it (:func:`run_code`).

    Raises:
        KmlError: the run was trained from uncommitted code and ``allow_dirty`` is not set.
    """
    paths = paths or {}
    job = run.run_dir / JOB_RECORD  # the run was trained as a launcher's job: its own machine and time
    if job.is_file():
        outcome = json.loads(job.read_text())
        seconds, machine = outcome.get("seconds", seconds), outcome.get("machine") or machine
    code = run_code(run.run_dir)
    if code.get("dirty") and not allow_dirty:
        raise KmlError(
            f"{run.run_id} was trained from a work tree with uncommitted changes; rerun it from committed code, "
            "or pass allow_dirty=true to record it marked as such"
        )
    run.record_dir.mkdir(parents=True, exist_ok=True)

    def copy(source: Path, target: Path) -> None:
        atomic_write_text(target, _portable(source.read_text(), paths))

    for name in RECORD_FILES:
        source = run.run_dir / name
        if source.is_file():
            copy(source, run.record_dir / name)
    specialists = run.run_dir / "specialists"
    if specialists.is_dir():
        for folder in sorted(p for p in specialists.iterdir() if p.is_dir()):
            if (folder / "metrics.jsonl").is_file():
                target = run.record_dir / "specialists" / folder.name
                target.mkdir(parents=True, exist_ok=True)
                copy(folder / "metrics.jsonl", target / "metrics.jsonl")
    atomic_write_json(
        run.record_dir / "record.json",
        {
            "run_id": run.run_id,
            "method": run.method,
            "mode": run.mode,
            "shots": run.shots,
            "seed": run.seed,
            "overrides": run.overrides,
            "command": run.command(),
            "seconds": seconds,
            "machine": machine,
            "code": code,
        },
    )
    return run.record_dir


def _execute(run: PlannedRun, log) -> float:
    from kml.config import compose_run_config
    from kml.engine.runs import run_training

    overrides = run.train_overrides()
    if run.status() == PARTIAL:
        overrides.append(f"resume={run.run_dir}")
        log(f"{run.run_id}: resuming {run.run_dir}")
    cfg = compose_run_config(overrides)
    run.run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    run_training(cfg, run.run_dir, overrides=overrides, log=log)
    return time.perf_counter() - started


# ------------------------------------------------------------------ estimate
def _seconds_per_iteration(cfg: DictConfig, device: torch.device, repeats: int = 3) -> tuple[float, float]:
    """Measured seconds of one meta-training iteration and of one evaluation task for the
    learner of ``cfg``, on random images of the run's shapes."""
    from kml.engine.device import use_vectorized
    from kml.engine.from_config import build_learner_from_config
    from kml.engine.optim import build_optimizers

    with torch.random.fork_rng(devices=[]):  # timing must not move the caller's random state
        torch.manual_seed(0)
        learner = build_learner_from_config(cfg).to(device)
    optimizers = build_optimizers(learner, cfg)
    ways, shots, queries = int(cfg.episode.ways), int(cfg.episode.shots), int(cfg.episode.queries)
    size = int(cfg.data.image_size)
    vectorized = use_vectorized(cfg.train.vectorized, device, size)

    generator = torch.Generator(device=device).manual_seed(0)

    def batch(tasks: int):
        def labels(per_class: int):
            return torch.arange(ways, device=device).repeat_interleave(per_class).expand(tasks, -1)

        support = torch.rand(tasks, ways * shots, 3, size, size, device=device, generator=generator)
        query = torch.rand(tasks, ways * queries, 3, size, size, device=device, generator=generator)
        return support, labels(shots), query, labels(queries)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    train_batch = batch(int(cfg.train.meta_batch_size))
    times = []
    for step in range(repeats + 1):
        sync()
        started = time.perf_counter()
        out = learner(*train_batch, ways=ways, vectorized=vectorized)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        out.loss.backward()
        for opt in optimizers:
            opt.step()
        sync()
        if step:  # the first one warms up
            times.append(time.perf_counter() - started)
    eval_batch = batch(int(cfg.eval.batch_size))
    learner.eval()
    with torch.no_grad():
        learner(*eval_batch, ways=ways, vectorized=vectorized)
        sync()
        started = time.perf_counter()
        learner(*eval_batch, ways=ways, vectorized=vectorized)
        sync()
    per_task = (time.perf_counter() - started) / int(cfg.eval.batch_size)
    return min(times), per_task


def _done_iterations(run_dir: Path) -> int:
    """The last logged training iteration of a started run (0 if none)."""
    iterations = [int(r["iteration"]) for r in read_jsonl(run_dir / "metrics.jsonl") if "loss" in r]
    return max(iterations, default=0)


def estimate_seconds(run: PlannedRun, device: torch.device, cache: dict) -> float:
    """Estimated seconds left for ``run`` on this machine: a short timing of its learner
    (cached per configuration) times the iterations and tasks left."""
    from kml.config import compose_run_config
    from kml.engine.from_config import specialist_config

    if run.status() in (RECORDED, FINISHED):
        return 0.0
    cfg = compose_run_config(run.train_overrides())
    learners = [(None, cfg)]
    if cfg.multi:
        from kml.data import resolve_names

        learners = [(d, specialist_config(cfg, d)) for d in resolve_names(list(cfg.mode.datasets), root=cfg.data.root)]
    total = 0.0
    for dataset, learner_cfg in learners:
        key = json.dumps(
            OmegaConf.to_container(OmegaConf.masked_copy(learner_cfg, ["learner", "modulation", "episode", "train",
                                                                        "data", "eval"]), resolve=True),
            sort_keys=True,
        )
        if key not in cache:
            cache[key] = _seconds_per_iteration(learner_cfg, device)
        per_iteration, per_task = cache[key]
        iterations = int(learner_cfg.train.iterations)
        folder = run.run_dir / "specialists" / dataset if dataset else run.run_dir
        left = max(0, iterations - _done_iterations(folder))
        modes = 1 if dataset else len(cfg.mode.datasets)
        val_every = int(learner_cfg.eval.val_every)
        validations = (left // val_every + 1) if val_every else 0
        total += left * per_iteration
        total += per_task * modes * (
            int(learner_cfg.eval.tasks_per_mode) + validations * int(learner_cfg.eval.val_tasks_per_mode)
        )
    return total


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = seconds / 60
    return f"{minutes / 60:.1f} h" if minutes >= 90 else f"{minutes:.0f} min"


# ------------------------------------------------------------------ transference
def lr_summary(lr, neutral: float) -> dict:
    """Range, 5th/95th percentiles, mean and positive / neutral / negative shares (%) of LR values."""
    import numpy as np

    from kml.analysis.transference import transfer_shares

    values = np.asarray(lr, dtype=np.float64).reshape(-1)
    shares = transfer_shares(values, neutral)
    return {
        "min": float(values.min()), "max": float(values.max()),
        "p5": float(np.percentile(values, 5)), "p95": float(np.percentile(values, 95)), "mean": float(values.mean()),
        "positive": shares.positive, "neutral": shares.neutral, "negative": shares.negative,
    }


def _transference_runs(campaign: DictConfig, plan: list[PlannedRun]) -> list[PlannedRun]:
    """The run of each transference method: the first planned run whose mode mixture
    holds both the source and the target mode."""
    from kml.config import compose_run_config
    from kml.data import resolve_names

    t = campaign.transference
    chosen = []
    for method in t.methods:
        for run in plan:
            if run.method != method:
                continue
            run_cfg = compose_run_config(run.train_overrides())
            datasets = resolve_names(list(run_cfg.mode.datasets), root=run_cfg.data.root)
            if t.source_mode in datasets and t.target_mode in datasets:
                chosen.append(run)
                break
        else:
            raise KmlError(
                f"campaign {campaign.name}: no run of {method} has both {t.source_mode} and {t.target_mode}; "
                "fix campaign.transference"
            )
    return chosen


def _transference_settings(t: DictConfig, progress: bool) -> DictConfig:
    """The campaign's transference settings as a ``scripts/transference.py`` config."""
    from kml.config import TransferenceScriptConfig

    cfg = OmegaConf.structured(TransferenceScriptConfig)
    cfg.merge_with(
        {
            "checkpoints": list(t.checkpoints),
            "source_mode": t.source_mode,
            "source_split": t.source_split,
            "target_mode": t.target_mode,
            "target_split": t.target_split,
            "sources": t.sources,
            "targets": t.targets,
            "alpha": t.alpha,
            "neutral": t.neutral,
            "seed": t.seed,
            "progress": progress,
        }
    )
    return cfg


def transference_entry(run: PlannedRun, iteration: int, cfg: DictConfig, device, log=logger.info) -> dict:
    """LR of ``run``'s checkpoint at ``iteration`` under ``cfg`` (its alpha), as
    ``{"record": <the run's record without checkpoints>, "entry": <that checkpoint's>}``.

    Each result is kept in ``<run_dir>/transference/`` under a key of its settings, so an
    interrupted transference step continues where it stopped, and checkpoints can be
    analysed while the run is still training."""
    from kml.analysis.transference_runs import analyse_run

    settings = {k: cfg[k] for k in ("source_mode", "source_split", "target_mode", "target_split", "sources",
                                    "targets", "alpha", "neutral", "seed")}
    key = hashlib.sha256(json.dumps({**settings, "iteration": int(iteration)}, sort_keys=True).encode()).hexdigest()
    cache = run.run_dir / "transference" / f"{iteration:08d}_{key[:16]}.json"
    if cache.is_file():
        return json.loads(cache.read_text())
    record = analyse_run(run.run_dir, OmegaConf.merge(cfg, {"checkpoints": [int(iteration)]}), device, log)
    entry = record.pop("checkpoints")[0]
    result = {"record": record, "entry": entry}
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cache, result)
    return result


def run_transference(campaign: DictConfig, plan: list[PlannedRun], results_dir: Path, device, progress: bool,
                     log=logger.info, paths: dict[str, str] | None = None) -> Path | None:
    """LR_{i->j} at the campaign's checkpoints for its transference methods, recorded in
    ``results/<campaign>/transference.json`` (skipped when that record exists)."""
    t = campaign.transference
    if not t.methods:
        return None
    path = results_dir / campaign.name / TRANSFERENCE_RECORD
    if path.is_file():
        log(f"transference: recorded in {path}")
        return path
    runs = _transference_runs(campaign, plan)
    for run in runs:
        missing = [i for i in t.checkpoints if not (run.run_dir / "checkpoints" / f"iter_{i:08d}.pt").is_file()]
        if missing:
            raise KmlError(
                f"transference needs the checkpoints of {run.run_id} at iterations {missing}, which are not in "
                f"{run.run_dir / 'checkpoints'}; run the campaign's runs on this machine (or set "
                "campaign.transference.methods=[] to skip it)"
            )
    cfg = _transference_settings(t, progress)
    computed: dict[tuple, float] = {}  # seconds of each distinct LR computation (the sweep may repeat one)

    def entry(run: PlannedRun, iteration: int, settings: DictConfig) -> dict:
        part = transference_entry(run, iteration, settings, device, log)
        computed[(run.run_id, iteration, float(settings.alpha))] = float(part["entry"].get("seconds", 0.0))
        return part

    records = []
    for run in runs:
        parts = [entry(run, int(i), cfg) for i in t.checkpoints]
        record = {**parts[0]["record"], "checkpoints": [part["entry"] for part in parts]}
        record.update(label=run.method, run_id=run.run_id, run_dir=_portable(str(record["run_dir"]), paths or {}))
        records.append(record)
    sweep = []
    if t.alpha_sweep:
        checkpoint = int(t.sweep_checkpoint if t.sweep_checkpoint is not None else list(t.checkpoints)[-1])
        for alpha in t.alpha_sweep:
            swept = OmegaConf.merge(cfg, {"alpha": float(alpha)})
            for run in runs:
                result = entry(run, checkpoint, swept)["entry"]
                sweep.append({"label": run.method, "alpha": float(alpha), "iteration": result["iteration"],
                              **lr_summary(result["lr"], float(t.neutral))})
    atomic_write_json(
        path,
        {
            "campaign": campaign.name,
            "settings": OmegaConf.to_container(t, resolve=True),
            "seconds": sum(computed.values()),  # of the LR computations (each is kept in <run_dir>/transference/)
            "machine": machine_description(device),
            "runs": records,
            "alpha_sweep": sweep,
        },
    )
    log(f"transference: recorded in {path}")
    return path


# ------------------------------------------------------------------ diagnostics
def _read_diagnostics(path: Path, settings: dict) -> tuple[list[dict], float]:
    """The entries of a diagnostics record made with the checkpoints and task count of
    ``settings``, and the seconds they took (none otherwise: such entries are recomputed,
    not mixed with new ones)."""
    if not path.is_file():
        return [], 0.0
    record = json.loads(path.read_text())
    same = all((record.get("settings") or {}).get(key) == settings[key] for key in ("checkpoints", "tasks_per_mode"))
    return (list(record.get("runs", [])), float(record.get("seconds", 0.0))) if same else ([], 0.0)


def _diagnosable(run: PlannedRun, checkpoints: list, log) -> bool:
    """Whether a run is recorded and its ``checkpoints`` are on this machine (a line when not)."""
    from kml.engine.checkpoints import CheckpointError, resolve_checkpoint

    if run.status() != RECORDED:
        return False
    try:
        for checkpoint in checkpoints:
            resolve_checkpoint(run.run_dir, checkpoint)
    except CheckpointError:
        log(f"diagnostics: {run.run_id} is recorded but its checkpoints {checkpoints} are not in {run.run_dir}; "
            "skipped (diagnose it where it was trained)")
        return False
    return True


def _diagnostics_entry(run: PlannedRun, checkpoint, tasks_per_mode: int, log) -> dict:
    """The diagnostics of one run at one checkpoint, on its first test tasks of each mode."""
    from kml.analysis.diagnostics import bias_inertness, modulation_statistics
    from kml.data import fixed_eval_tasks
    from kml.engine.checkpoints import load_run
    from kml.engine.from_config import tasksets_for

    loaded = load_run(run.run_dir, checkpoint)
    test = tasksets_for(loaded.config, "cpu").test
    batches = list(fixed_eval_tasks(test, tasks_per_mode, tasks_per_mode, seed=int(loaded.config.eval.seed)))
    modes = modulation_statistics(loaded.learner, batches)
    log(f"diagnostics: {run.method} @ {loaded.iteration}")
    if any("skipped" in stats for stats in modes.values()):
        log(f"diagnostics: {run.method}: modulation {loaded.learner.modulation} provides no statistics; "
            "its layers are skipped")
    return {
        "label": run.method,
        "run_id": run.run_id,
        "iteration": loaded.iteration,
        "tasks_per_mode": tasks_per_mode,
        "bias_zeroed_logit_change": max(bias_inertness(loaded.learner, b) for _, b in batches),
        "modes": modes,
    }


def run_diagnostics(campaign: DictConfig, plan: list[PlannedRun], results_dir: Path, log=logger.info) -> Path | None:
    """Modulation diagnostics (:mod:`kml.analysis.diagnostics`) of the campaign's
    diagnostics methods, recorded in ``results/<campaign>/modulation_diagnostics.json``.

    Each method is diagnosed as soon as its run is recorded and its checkpoints are on
    this machine (a run recorded elsewhere is skipped with a line until they are), and
    added to the record in the order of ``diagnostics.methods``. A method whose entries
    match its run and the diagnostics settings is not recomputed. The record is re-read
    just before it is written, so processes that diagnose different methods at the same
    time (one per method) keep each other's entries.
    Returns the record's path, or ``None`` when no diagnosed run is recorded yet.
    """
    d = campaign.diagnostics
    settings = OmegaConf.to_container(d, resolve=True)
    checkpoints = list(d.checkpoints) or ["last"]
    path = results_dir / campaign.name / DIAGNOSTICS_RECORD
    done = {(entry["label"], entry["run_id"]) for entry in _read_diagnostics(path, settings)[0]}
    runs = [next(r for r in plan if r.method == method) for method in d.methods]
    todo = [run for run in runs if (run.method, run.run_id) not in done and _diagnosable(run, checkpoints, log)]
    if not todo:
        return path if done else None
    started = time.perf_counter()
    entries = [_diagnostics_entry(run, checkpoint, int(d.tasks_per_mode), log)
               for run in todo for checkpoint in checkpoints]
    # merge with what is on disk now: another process may have added its methods meanwhile
    kept, seconds = _read_diagnostics(path, settings)
    ours = {(entry["label"], entry["run_id"]) for entry in entries}
    merged = [entry for entry in kept if (entry["label"], entry["run_id"]) not in ours] + entries
    order = {method: i for i, method in enumerate(d.methods)}
    merged.sort(key=lambda entry: order.get(entry["label"], len(order)))  # stable: checkpoints keep their order
    seconds += time.perf_counter() - started
    atomic_write_json(path, {"campaign": campaign.name, "settings": settings, "seconds": seconds, "runs": merged})
    log(f"diagnostics: recorded in {path}")
    return path


# ------------------------------------------------------------------ data
def record_data(campaign: DictConfig, cfg: DictConfig, results_dir: Path, log=logger.info) -> Path | None:
    """``results/<campaign>/data.json``: the prepared data of the campaign's modes at its
    image size (manifest counts per split and content hashes,
    :func:`kml.data.provenance.data_provenance`), as prepared on this machine. Each run
    records its own data too (``run_info.json``); this record labels campaigns whose runs
    predate that. Skipped (with a line) when a dataset is not prepared here."""
    from kml.config import compose_run_config
    from kml.data.errors import DataError
    from kml.engine.from_config import data_provenance_for

    datasets: dict[str, dict] = {}
    for mode in campaign.modes:
        # the campaign's own overrides too: they may choose split schemes or a split seed
        run_cfg = compose_run_config([f"mode={mode}", f"data.root={cfg.data_root}",
                                      f"data.image_size={campaign.budget.image_size}", *campaign.overrides])
        try:
            datasets.update(data_provenance_for(run_cfg))
        except DataError as err:
            log(f"data record: skipped ({err})")
            return None
    path = results_dir / campaign.name / DATA_RECORD
    record = {"campaign": campaign.name, "image_size": int(campaign.budget.image_size), "datasets": datasets}
    if not path.is_file() or json.loads(path.read_text()) != record:
        atomic_write_json(path, record)
        log(f"data record: {path}")
    return path


# ------------------------------------------------------------------ the campaign
def run_campaign(cfg: DictConfig, log=logger.info) -> dict:
    """``scripts/reproduce.py``: plan, run (or ``dry_run``), record and report a campaign.

    The missing runs are trained here, one after the other, or with ``cfg.launcher`` (a
    Hydra launcher, e.g. ``submitit_slurm``) as one job each, all launched at once
    (:mod:`kml.campaign.launch`); either way the finished runs are then recorded here.

    Raises:
        KmlError: a user error; or launched runs that did not finish (each named in a line
            of ``log``), once the others are recorded and the report written.

    Returns:
        ``{"plan": [(run_id, status)], "report": path or None}``.
    """
    from kml.campaign.report import write_report
    from kml.engine.device import resolve_device

    campaign = cfg.campaign
    results_dir = Path(cfg.results_dir)
    plan = plan_campaign(campaign, cfg.work_dir, results_dir, data_root=cfg.data_root, progress=cfg.progress)
    if cfg.report_only:
        report = write_report(results_dir, Path(cfg.report), Path(cfg.figures_dir), log=log)
        return {"plan": [(r.run_id, r.status()) for r in plan], "report": str(report)}
    selected = _selected(cfg, plan)
    check_launcher(cfg.launcher, list(cfg.launcher_overrides))
    if cfg.launcher:  # an unknown launcher or setting, or a missing plugin, shows before anything runs
        compose_launcher_config(cfg.launcher, list(cfg.launcher_overrides), *_launch_place(cfg))
    device = resolve_device(cfg.device)
    if cfg.dry_run:
        return _dry_run(cfg, plan, selected, device, log)
    campaign_dir = results_dir / campaign.name
    campaign_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(campaign_dir / "campaign.yaml", OmegaConf.to_yaml(campaign, resolve=True))
    paths = machine_paths(cfg)
    record_data(campaign, cfg, results_dir, log)

    def analyses() -> None:
        """The transference and diagnostics steps, as soon as the runs they analyse are recorded."""
        if campaign.transference.methods and all(r.status() == RECORDED for r in _transference_runs(campaign, plan)):
            run_transference(campaign, plan, results_dir, device, bool(cfg.progress), log, paths)
        if campaign.diagnostics.methods:
            run_diagnostics(campaign, plan, results_dir, log)

    analyses()
    launched, failed = _train_and_record(cfg, _chosen(cfg, plan, selected, log), machine_description(device), paths,
                                         analyses, log)
    report = write_report(results_dir, Path(cfg.report), Path(cfg.figures_dir), log=log)
    if failed:
        raise KmlError(
            f"{len(failed)} of the {len(launched)} launched runs did not finish ({', '.join(failed)}; each is listed "
            "above with its error); fix the cause and run the same command again: the other runs are recorded, "
            "and each unfinished run continues from its last checkpoint"
        )
    return {"plan": [(r.run_id, r.status()) for r in plan], "report": str(report)}


def _launch_place(cfg: DictConfig) -> tuple[Path, str]:
    """The launcher's folder and job name of the campaign."""
    return Path(cfg.work_dir) / cfg.campaign.name, f"kml-{cfg.campaign.name}"


def _selected(cfg: DictConfig, plan: list[PlannedRun]) -> set[str]:
    """The run ids of ``only_methods`` (every run without it).

    Raises:
        KmlError: ``only_methods`` names a method the campaign does not list.
    """
    campaign = cfg.campaign
    only = list(cfg.only_methods)
    unknown = [name for name in only if name not in {m.name for m in campaign.methods}]
    if unknown:
        raise KmlError(
            f"only_methods names {unknown}, which campaign {campaign.name} does not list; "
            f"use names of its methods: {', '.join(m.name for m in campaign.methods)}"
        )
    return {r.run_id for r in plan if not only or r.method in only}


def _dry_run(cfg: DictConfig, plan: list[PlannedRun], selected: set[str], device, log) -> dict:
    """``dry_run=true``: the plan with each run's estimated time, and what would run."""
    statuses = {r.run_id: r.status() for r in plan}
    cache: dict = {}
    rows = ["| run | status | estimated time |", "|---|---|---|"]
    total = 0.0
    for run in plan:
        if run.run_id not in selected:
            rows.append(f"| {run.run_id} | {statuses[run.run_id]}, not in only_methods | - |")
            continue
        seconds = estimate_seconds(run, device, cache)
        total += seconds
        rows.append(f"| {run.run_id} | {statuses[run.run_id]} | {_duration(seconds) if seconds else '-'} |")
    log(f"campaign {cfg.campaign.name}: {len(plan)} runs on {device}\n")
    log("\n".join(rows))
    log(f"\nestimated time left on this machine: {_duration(total)} (from a short timing of each learner)")
    waiting = [r for r in plan if r.run_id in selected and statuses[r.run_id] != RECORDED]
    if not cfg.launcher:
        for run in waiting:
            log(f"  {run.run_id}: {run.command()}")
        return {"plan": list(statuses.items()), "report": None, "seconds": total}
    jobs = [r for r in waiting if statuses[r.run_id] in (NEW, PARTIAL)]
    if cfg.max_runs:
        jobs = jobs[: int(cfg.max_runs)]
    log(f"launcher {cfg.launcher} would start {len(jobs)} job{'s' if len(jobs) != 1 else ''}, one per run, "
        "each doing what its command here does:")
    for run in jobs:
        log(f"  {run.run_id}: {train_command(run)}")
    finished = [r.run_id for r in waiting if statuses[r.run_id] == FINISHED]
    if finished:
        log(f"trained already (finished in their run directories), recorded without a job: {', '.join(finished)}")
    return {"plan": list(statuses.items()), "report": None, "seconds": total}


def _chosen(cfg: DictConfig, plan: list[PlannedRun], selected: set[str], log) -> list[PlannedRun]:
    """The selected runs not recorded yet, up to ``max_runs``."""
    chosen = []
    for run in plan:
        if run.status() == RECORDED:
            log(f"{run.run_id}: recorded, skipped")
            continue
        if run.run_id not in selected:
            continue
        if cfg.max_runs and len(chosen) >= cfg.max_runs:
            log(f"max_runs={cfg.max_runs} reached; the next call continues with {run.run_id}")
            break
        chosen.append(run)
    return chosen


def _train_and_record(cfg: DictConfig, chosen: list[PlannedRun], machine: dict, paths: dict, after_each, log):
    """Train the ``chosen`` runs (here, or as launched jobs) and record each one that
    finishes, calling ``after_each`` after each record; returns ``(launched, failed ids)``."""
    allow_dirty, allow_change = bool(cfg.allow_dirty), bool(cfg.allow_commit_change)
    launched = {}
    if cfg.launcher:
        missing = [run for run in chosen if run.status() in (NEW, PARTIAL)]
        for run in missing:  # before any job starts
            _check_code(run, allow_dirty, allow_change)
        if missing:
            launched = launch_runs(missing, cfg.launcher, list(cfg.launcher_overrides), *_launch_place(cfg), log)
    failed = []
    for run in chosen:
        seconds, run_machine = None, machine
        if run.run_id in launched:
            outcome = launched[run.run_id]
            if outcome.error:
                log(f"{run.run_id}: not recorded, its job failed: {outcome.error} (log: {run.run_dir / 'train.log'})")
                failed.append(run.run_id)
                continue
            seconds, run_machine = outcome.seconds, outcome.machine  # the job's machine
        elif run.status() in (NEW, PARTIAL):
            _check_code(run, allow_dirty, allow_change)
            log(f"\n{run.run_id}: {run.command()}")
            seconds = _execute(run, log)
        record_run(run, seconds, run_machine, paths, allow_dirty=allow_dirty)
        log(f"{run.run_id}: recorded in {run.record_dir}")
        after_each()
    return launched, failed
