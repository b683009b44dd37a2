"""Transference analysis of saved runs (the work behind ``scripts/transference.py``):
checkpoints of one or more runs -> LR_{i->j} histograms, overlay, mode matrix, JSON."""

from __future__ import annotations

import logging
import re
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from kml.commands import command
from kml.config import validate_transference_config
from kml.errors import KmlError

logger = logging.getLogger(__name__)


def expand_run_dirs(patterns: list[str]) -> list[Path]:
    """Run directories named by ``patterns`` (globs allowed), in the given order."""
    from kml.engine.rundir import find_run_dirs

    return find_run_dirs(patterns, "config.yaml", f"it is not a run directory of {command('train')}")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text.replace("+", "_")).strip("-").lower() or "run"


def _labels(cfg: DictConfig, methods: list[str], run_dirs: list[Path]) -> list[str]:
    if cfg.labels:
        if len(cfg.labels) != len(run_dirs):
            raise KmlError(f"labels has {len(cfg.labels)} entries for {len(run_dirs)} runs; give one per run or none")
        return list(cfg.labels)
    labels = list(methods)
    for i, label in enumerate(methods):
        if methods.count(label) > 1:
            labels[i] = f"{label} ({run_dirs[i].name})"
    return labels


def _checkpoints(run_dir: Path, wanted: list[int]) -> list[int | str]:
    from kml.engine.checkpoints import list_checkpoints

    saved = list_checkpoints(run_dir)
    if not wanted:
        if saved:
            return list(saved)
        if (run_dir / "checkpoints" / "last.pt").is_file():
            return ["last"]
        raise KmlError(f"{run_dir} has no checkpoints; train it first ({command('train')})")
    missing = [i for i in wanted if i not in saved]
    if missing:
        available = ", ".join(str(i) for i in saved) or "none"
        raise KmlError(f"{run_dir} has no checkpoint at iteration(s) {missing}; available iterations: {available}")
    return list(wanted)


def _choose_modes(cfg: DictConfig, mode_names: list[str]) -> tuple[str, str]:
    source = cfg.source_mode or mode_names[0]
    target = cfg.target_mode or (mode_names[1] if len(mode_names) > 1 else mode_names[0])
    for key, mode in (("source_mode", source), ("target_mode", target)):
        if mode not in mode_names:
            raise KmlError(f"{key}={mode} is not a mode of this run; its modes are: {', '.join(mode_names)}")
    return source, target


def _split_sampler(tasksets, split: str, key: str):
    sampler = tasksets[split]
    if sampler is None:
        raise KmlError(f"{key}={split}: the run's datasets have no {split} split; choose another split")
    return sampler


def sample_tasks(sampler, mode: str, count: int, seed: int, device, dtype=None):
    """``count`` fixed tasks of ``mode``: task ``k`` depends only on (seed, mode, split, k)."""
    from kml.analysis.transference import Tasks, as_tasks

    batches = [
        as_tasks(batch, mode_names=sampler.mode_names).to(device, dtype)
        for batch in sampler.eval_tasks(mode, count, batch_size=min(count, 50), seed=seed)
    ]
    return Tasks.cat(batches)


def _progress_bar(enabled: bool, total: int, desc: str):
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=desc, leave=False, file=sys.stderr)

    def update(done: int, _total: int) -> None:
        bar.update(done - bar.n)

    return update, bar.close


def _matrix_tasks(source_sampler, target_sampler, cfg: DictConfig, target_seed: int, device, dtype):
    """The sources and targets of the mode-to-mode matrix: ``matrix_sources`` /
    ``matrix_targets`` tasks of every mode."""
    from kml.analysis.transference import Tasks

    sources = Tasks.cat([sample_tasks(source_sampler, m, cfg.matrix_sources, cfg.seed, device, dtype)
                         for m in source_sampler.mode_names])
    targets = Tasks.cat([sample_tasks(target_sampler, m, cfg.matrix_targets, target_seed, device, dtype)
                         for m in target_sampler.mode_names])
    return sources, targets


def _checkpoint_entry(run, cfg: DictConfig, tasks: dict, alpha: float, mode_names: list[str], log) -> dict:
    """The transference (and the mode matrix, with ``cfg.matrix``) of one loaded checkpoint;
    ``tasks``: ``sources``, ``targets`` and, with the matrix, ``matrix_sources`` and
    ``matrix_targets``."""
    from kml.analysis.transference import transference

    if cfg.float64:
        run.learner.double()
    options = dict(chunk_size=cfg.chunk_size or None, vectorized=cfg.vectorized, training=cfg.inner_steps == "train")
    update, close = _progress_bar(cfg.progress, cfg.sources, f"{run.method} @ {run.iteration}")
    try:
        result = transference(run.learner, tasks["sources"], tasks["targets"], alpha, progress=update, **options)
    finally:
        close()
    entry = {"iteration": run.iteration, "checkpoint": str(run.checkpoint), **result.as_dict(cfg.neutral)}
    log(f"  iteration {run.iteration}: {result.shares(cfg.neutral)}  ({result.seconds:.1f} s)")
    if cfg.matrix:
        update, close = _progress_bar(cfg.progress, len(tasks["matrix_sources"]), f"matrix @ {run.iteration}")
        try:
            full = transference(run.learner, tasks["matrix_sources"], tasks["matrix_targets"], alpha,
                                progress=update, **options)
        finally:
            close()
        entry["matrix"] = full.matrix(cfg.neutral, mode_order=mode_names).as_dict()
        entry["matrix"]["seconds"] = full.seconds
        log(f"  iteration {run.iteration}: mode-to-mode matrix ({full.seconds:.1f} s)")
    return entry


def analyse_run(run_dir: Path, cfg: DictConfig, device, log=logger.info) -> dict:
    """Transference of every requested checkpoint of one run (and the mode matrix)."""
    from kml.data import derive_seed
    from kml.engine.checkpoints import load_run
    from kml.engine.from_config import tasksets_for

    iterations = _checkpoints(run_dir, list(cfg.checkpoints))
    first = load_run(run_dir, iterations[0], device=device)
    config = first.config
    if config.multi:
        raise KmlError(f"{run_dir} is a Multi-* run (one specialist per mode); pass single-learner runs")
    if cfg.data_root:
        config = OmegaConf.merge(config, {"data": {"root": cfg.data_root}})
    tasksets = tasksets_for(config, device, seed=cfg.seed)
    mode_names = list(first.mode_names) or list(tasksets.train.mode_names)
    source_mode, target_mode = _choose_modes(cfg, mode_names)
    alpha = float(cfg.alpha) if cfg.alpha is not None else float(config.train.lr)
    source_sampler = _split_sampler(tasksets, cfg.source_split, "source_split")
    target_sampler = _split_sampler(tasksets, cfg.target_split, "target_split")
    target_seed = derive_seed("kml-transference-target", cfg.seed)
    dtype = torch.float64 if cfg.float64 else None
    tasks = {"sources": sample_tasks(source_sampler, source_mode, cfg.sources, cfg.seed, device, dtype),
             "targets": sample_tasks(target_sampler, target_mode, cfg.targets, target_seed, device, dtype)}
    if cfg.matrix:
        tasks["matrix_sources"], tasks["matrix_targets"] = _matrix_tasks(source_sampler, target_sampler, cfg,
                                                                         target_seed, device, dtype)
    log(
        f"{first.method} ({run_dir}): {cfg.sources} {cfg.source_split} tasks of {source_mode} -> "
        f"{cfg.targets} {cfg.target_split} task(s) of {target_mode}, alpha={alpha:g}, "
        f"checkpoints {', '.join(map(str, iterations))}"
    )
    record = {
        "run_dir": str(run_dir), "method": first.method, "mode_names": mode_names, "source_mode": source_mode,
        "source_split": cfg.source_split, "target_mode": target_mode, "target_split": cfg.target_split,
        "alpha": alpha, "neutral": cfg.neutral, "dtype": "float64" if cfg.float64 else "float32", "checkpoints": [],
    }
    for iteration in iterations:
        run = first if iteration == iterations[0] else load_run(run_dir, iteration, device=device)
        record["checkpoints"].append(_checkpoint_entry(run, cfg, tasks, alpha, mode_names, log))
        del run
    return record


def _panel_title(entry: dict) -> str:
    return f"{entry['iteration']} iterations"


def write_outputs(records: list[dict], labels: list[str], cfg: DictConfig, output_dir: Path, log=logger.info) -> dict:
    """PNGs and ``transference.json``; returns the written paths."""
    from kml.analysis.transference import ModeMatrix
    from kml.analysis.transference_plots import plot_lr_histograms, plot_lr_overlay, plot_mode_matrix
    from kml.io import atomic_write_json

    output_dir.mkdir(parents=True, exist_ok=True)
    files: dict = {"histograms": {}, "matrix": {}, "overlay": None}
    slugs = []
    for label, record in zip(labels, records):
        slug = _slug(label)
        while slug in slugs:
            slug += "_"
        slugs.append(slug)
        title = (
            f"{label}: {record['source_split']} {record['source_mode']} -> "
            f"{record['target_split']} {record['target_mode']} (alpha={record['alpha']:g})"
        )
        panels = [(_panel_title(e), e["lr"]) for e in record["checkpoints"]]
        path = plot_lr_histograms(panels, output_dir / f"lr_histograms_{slug}.png", cfg.neutral, cfg.bins, title)
        files["histograms"][label] = str(path)
        if cfg.matrix:
            mats = [(_panel_title(e), ModeMatrix.from_dict(e["matrix"])) for e in record["checkpoints"]]
            title = f"{label}: mean LR, source -> target mode"
            path = plot_mode_matrix(mats, output_dir / f"mode_matrix_{slug}.png", title)
            files["matrix"][label] = str(path)
    if len(records) > 1:
        common = set.intersection(*({e["iteration"] for e in r["checkpoints"]} for r in records))
        if common:
            panels = []
            for iteration in sorted(common):
                series = [
                    (label, next(e["lr"] for e in r["checkpoints"] if e["iteration"] == iteration))
                    for label, r in zip(labels, records)
                ]
                panels.append((f"{iteration} iterations", series))
            protocol = {
                (r["source_split"], r["source_mode"], r["target_split"], r["target_mode"], r["alpha"]) for r in records
            }
            title = "LR of several runs"
            if len(protocol) == 1:
                src_split, src_mode, tgt_split, tgt_mode, alpha = protocol.pop()
                title += f": {src_split} {src_mode} -> {tgt_split} {tgt_mode} (alpha={alpha:g})"
            path = plot_lr_overlay(panels, output_dir / "lr_overlay.png", cfg.neutral, cfg.bins, title)
            files["overlay"] = str(path)
        else:
            log("no checkpoint iteration common to all runs: no overlay plot")
    report = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "runs": [dict(record, label=label) for label, record in zip(labels, records)],
        "files": files,
    }
    json_path = output_dir / "transference.json"
    atomic_write_json(json_path, report)
    files["json"] = str(json_path)
    return files


def summary_table(records: list[dict], labels: list[str]) -> str:
    """Shares per run and checkpoint, as a markdown table."""
    rows = ["| run | iteration | positive | neutral | negative | seconds |", "|---|---|---|---|---|---|"]
    for label, record in zip(labels, records):
        for e in record["checkpoints"]:
            s = e["shares"]
            rows.append(
                f"| {label} | {e['iteration']} | {s['positive']:.1f}% | {s['neutral']:.1f}% | "
                f"{s['negative']:.1f}% | {e['seconds']:.1f} |"
            )
    return "\n".join(rows)


def run(cfg: DictConfig, log=logger.info) -> dict:
    """The whole analysis; returns ``{"records", "labels", "files"}``."""
    from kml.engine.device import resolve_device

    validate_transference_config(cfg)
    run_dirs = expand_run_dirs(list(cfg.run_dirs))
    device = resolve_device(cfg.device)
    start = time.perf_counter()
    records = [analyse_run(run_dir, cfg, device, log) for run_dir in run_dirs]
    labels = _labels(cfg, [r["method"] for r in records], run_dirs)
    if cfg.output_dir:
        output_dir = Path(cfg.output_dir)
    else:
        output_dir = run_dirs[0] / "transference" if len(run_dirs) == 1 else Path("transference")
    files = write_outputs(records, labels, cfg, output_dir, log)
    log("\n" + summary_table(records, labels))
    log(f"\nwritten to {output_dir}/ ({time.perf_counter() - start:.0f} s)")
    return {"records": records, "labels": labels, "files": files}
