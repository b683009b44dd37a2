"""The comparison of several runs (``scripts/compare.py``): the paper-style table of
accuracies with 95% CIs, and each method's paired difference from a baseline method on
the identical test tasks (:mod:`kml.analysis.paired`)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from kml.analysis.paired import PairingError, compare_task_records
from kml.commands import command
from kml.errors import KmlError

logger = logging.getLogger(__name__)

__all__ = [
    "RunRecord",
    "collect_runs",
    "collect_results",
    "comparison_table",
    "paired_comparisons",
    "paired_table",
    "write_comparison",
    "format_p",
    "modes_of",
    "read_run_record",
]

TASK_ACCURACIES = "task_accuracies.json"


@dataclass
class RunRecord:
    """A finished run's records: ``results.json`` and (when saved) ``task_accuracies.json``."""

    path: Path
    results: dict
    tasks: dict | None

    @property
    def method(self) -> str:
        return self.results["method"]

    @property
    def setup(self) -> str:
        e = self.results["eval"]
        return f"{self.results['mode']} {e['ways']}w{e['shots']}s"


def _read_json(path: Path, fix: str) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        raise KmlError(f"{path} is not valid JSON; {fix}") from None


def read_run_record(path: str | Path) -> RunRecord:
    """The records of one run directory (or of a copied record folder)."""
    path = Path(path)
    fix = f"re-create it with {command('eval')} run_dir={path} output={path / 'results.json'}"
    results = _read_json(path / "results.json", fix)
    tasks_file = path / TASK_ACCURACIES
    tasks = _read_json(tasks_file, fix) if tasks_file.is_file() else None
    return RunRecord(path, results, tasks)


def collect_runs(patterns: list[str]) -> list[RunRecord]:
    """The records of every run directory matched by ``patterns`` (paths or globs).

    Raises:
        KmlError: a pattern matches nothing, or a match has no ``results.json``.
    """
    from kml.engine.rundir import find_run_dirs

    paths = find_run_dirs(patterns, "results.json", f"run {command('eval')} run_dir={{path}} first")
    return [read_run_record(path) for path in paths]


def collect_results(patterns: list[str]) -> list[tuple[Path, dict]]:
    """``(run_dir, results)`` of every run matched by ``patterns``."""
    return [(r.path, r.results) for r in collect_runs(patterns)]


def modes_of(runs: list[RunRecord]) -> list[str]:
    """The modes of several runs' results, in order of first appearance."""
    modes: list[str] = []
    for run in runs:
        for m in run.results["per_mode"]:
            if m not in modes:
                modes.append(m)
    return modes


def comparison_table(runs: list[RunRecord] | list[tuple[Path, dict]]) -> str:
    """Paper-style markdown table: one row per run (method), a column per mode and
    overall, entries ``accuracy +- ci95`` in percent."""
    runs = [r if isinstance(r, RunRecord) else RunRecord(r[0], r[1], None) for r in runs]
    modes = modes_of(runs)
    rows = ["| method | setup | " + " | ".join(modes) + " | overall |", "|" + "---|" * (len(modes) + 3)]
    for run in runs:
        cells = []
        for m in modes:
            v = run.results["per_mode"].get(m)
            cells.append(f"{v['accuracy']:.2f} +- {v['ci95']:.2f}" if v else "-")
        o = run.results["overall"]
        rows.append(
            f"| {run.method} | {run.setup} | " + " | ".join(cells) + f" | {o['accuracy']:.2f} +- {o['ci95']:.2f} |"
        )
    return "\n".join(rows)


def _baseline_index(runs: list[RunRecord], baseline: str | None) -> int:
    if not baseline:
        return 0
    for i, run in enumerate(runs):
        if run.method == baseline or run.path == Path(baseline) or run.path.name == baseline:
            return i
    names = ", ".join(dict.fromkeys(r.method for r in runs))
    raise KmlError(
        f"baseline={baseline!r} is none of the compared runs; use one of the methods ({names}) or a run directory"
    )


def paired_comparisons(runs: list[RunRecord], baseline: str | None = None) -> dict:
    """Each run's paired difference from the baseline run (a method name or a run
    directory; default: the first run), on the tasks both were tested on.

    Returns:
        ``{"baseline": {...}, "comparisons": [{"method", "run_dir", "per_mode", "overall"}
        or {"method", "run_dir", "error"}]}``.
    """
    base = runs[_baseline_index(runs, baseline)]
    out = {"baseline": {"method": base.method, "run_dir": str(base.path)}, "test": "paired t-test, two-sided",
           "comparisons": []}
    for run in runs:
        if run is base:
            continue
        entry = {"method": run.method, "run_dir": str(run.path)}
        if run.tasks is None or base.tasks is None:
            missing = run if run.tasks is None else base
            entry["error"] = (
                f"{missing.path} has no {TASK_ACCURACIES}; re-evaluate it with {command('eval')} "
                f"run_dir={missing.path} output={missing.path / 'results.json'}"
            )
        else:
            try:
                entry.update(compare_task_records(run.tasks, base.tasks))
            except PairingError as err:
                entry["error"] = str(err)
        out["comparisons"].append(entry)
    return out


def format_p(p: float) -> str:
    """A p-value for a table: ``<1e-4`` below that, else 2 significant digits."""
    if p != p:  # nan
        return "-"
    return "<1e-4" if p < 1e-4 else f"{p:.2g}"


def paired_table(paired: dict) -> str:
    """Markdown: one row per method, ``difference +- ci95 (p)`` per mode and overall."""
    comparisons = paired["comparisons"]
    modes: list[str] = []
    for c in comparisons:
        for m in c.get("per_mode", {}):
            if m not in modes:
                modes.append(m)
    base = paired["baseline"]["method"]
    header = f"| method - {base} | " + " | ".join(modes) + " | overall | tasks | p (overall) |"
    rows = [header, "|" + "---|" * (len(modes) + 4)]
    for c in comparisons:
        if "error" in c:
            rows.append(f"| {c['method']} | " + " | ".join("-" for _ in modes) + f" | {c['error']} | - | - |")
            continue
        cells = []
        for m in modes:
            d = c["per_mode"].get(m)
            cells.append(f"{d['difference']:+.2f} +- {d['ci95']:.2f}" if d else "-")
        o = c["overall"]
        rows.append(
            f"| {c['method']} | " + " | ".join(cells)
            + f" | **{o['difference']:+.2f} +- {o['ci95']:.2f}** | {o['tasks']} | {format_p(o['p_value'])} |"
        )
    return "\n".join(rows)


def write_comparison(patterns: list[str], output: str | Path, baseline: str | None = None, log=logger.info) -> str:
    """Collect runs, print the comparison table and the paired differences from the
    baseline, and write them: ``output`` (markdown), ``<output>.json`` (the runs'
    accuracies) and ``<output stem>_paired.json`` (the paired differences)."""
    from kml.io import atomic_write_json, atomic_write_text

    if not patterns:
        raise KmlError("run_dirs is empty: pass run directories or globs, e.g. run_dirs='[outputs/2026-11-26/*]'")
    runs = collect_runs(patterns)
    table = comparison_table(runs)
    text = table
    paired = None
    if len(runs) > 1:
        paired = paired_comparisons(runs, baseline)
        text += (
            f"\n\nPaired differences from {paired['baseline']['method']} on the identical test tasks "
            "(accuracy points, mean +- 1.96 sd / sqrt(n); p: two-sided paired t-test):\n\n" + paired_table(paired)
        )
    output = Path(output)
    atomic_write_text(output, text + "\n")
    atomic_write_json(
        output.with_suffix(".json"),
        [
            {"run_dir": str(r.path), "method": r.method, "mode": r.results["mode"], "eval": r.results["eval"],
             "overall": r.results["overall"], "per_mode": r.results["per_mode"]}
            for r in runs
        ],
    )
    written = [output, output.with_suffix(".json")]
    if paired is not None:
        written.append(output.with_name(output.stem + "_paired.json"))
        atomic_write_json(written[-1], paired)
    log(text)
    log(f"\nwritten to {', '.join(map(str, written))}")
    return text
