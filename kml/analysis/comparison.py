"""The comparison of several runs (``scripts/compare.py``): the paper-style table of
accuracies with 95% CIs, and each method's paired difference from a baseline method on
the identical test tasks (:mod:`kml.analysis.paired`).

Runs of one method in one setup (mixture, ways and shots) with different training
seeds are one group (:func:`group_runs`), summarised by the rule of the results report
(:mod:`kml.analysis.seeds`): with several seeds, the mean over the seeds ± the Student-t
interval over seeds, with each seed's own figures in a per-seed table; with one seed,
its figure ± its 95% CI over tasks. Paired differences pair the runs of each training
seed that both methods have, then aggregate over those seeds the same way; two methods
with one run each are paired whatever their seeds. A group is never compared with
itself.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from kml.analysis.seeds import Contrast, accuracy_over_seeds, contrast_over_seeds
from kml.commands import command
from kml.errors import KmlError

logger = logging.getLogger(__name__)

__all__ = [
    "MethodRuns",
    "RunRecord",
    "group_runs",
    "default_output",
    "per_seed_table",
    "paired_per_seed_table",
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

    @property
    def seed(self) -> int | None:
        """The run's training seed (``config.train.seed`` of its results), ``None`` if unrecorded."""
        try:
            return int(self.results["config"]["train"]["seed"])
        except (KeyError, TypeError, ValueError):
            return None


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


@dataclass
class MethodRuns:
    """The runs of one method in one setup, one per training seed.

    Attributes:
        label: the method's name, with the setup added where the method is compared in
            several setups, or the run directory where two runs share a seed.
        method: the method's name (``results.json``'s ``method``).
        setup: ``"<mode> <N>w<K>s"``.
        runs: ``{seed: run}``, seeds ascending.
    """

    label: str
    method: str
    setup: str
    runs: dict[int | None, RunRecord] = field(default_factory=dict)

    @property
    def seeds(self) -> list[int | None]:
        return list(self.runs)

    @property
    def paths(self) -> list[Path]:
        return [run.path for run in self.runs.values()]

    def accuracy(self, mode: str | None = None) -> tuple[float, float] | None:
        """``(accuracy, ci95)`` overall or of ``mode``: the mean over the seeds ± the
        t-interval over seeds with several seeds, else the run's accuracy ± its CI over
        tasks (:func:`kml.analysis.seeds.accuracy_over_seeds`)."""
        return accuracy_over_seeds([run.results["overall"] if mode is None else run.results["per_mode"].get(mode)
                                    for run in self.runs.values()])


def group_runs(runs: list[RunRecord]) -> list[MethodRuns]:
    """The runs grouped by method and setup (in order of first appearance), each group's
    runs keyed by training seed. Runs of one method and setup that share a seed (or lack
    one) are not seeds of one method: each is then a group of its own, labelled with its
    run directory."""
    members: dict[tuple[str, str], list[RunRecord]] = {}
    for run in runs:
        members.setdefault((run.method, run.setup), []).append(run)
    setups_of: dict[str, set[str]] = {}
    for method, setup in members:
        setups_of.setdefault(method, set()).add(setup)
    groups = []
    for (method, setup), group in members.items():
        label = method if len(setups_of[method]) == 1 else f"{method} ({setup})"
        seeds = [run.seed for run in group]
        if None in seeds or len(set(seeds)) != len(seeds):
            groups += [MethodRuns(f"{label} [{run.path}]", method, setup, {run.seed: run}) for run in group]
        else:
            groups.append(MethodRuns(label, method, setup, dict(sorted(zip(seeds, group)))))
    return groups


def _seeds_text(seeds) -> str:
    return ", ".join("?" if seed is None else str(seed) for seed in seeds)


def _as_groups(runs) -> list[MethodRuns]:
    if runs and isinstance(runs[0], MethodRuns):
        return list(runs)
    return group_runs([r if isinstance(r, RunRecord) else RunRecord(r[0], r[1], None) for r in runs])


def comparison_table(runs: list[RunRecord] | list[tuple[Path, dict]] | list[MethodRuns]) -> str:
    """Paper-style markdown table: one row per method (runs grouped by :func:`group_runs`),
    a column per mode and overall, entries ``accuracy +- ci95`` in percent (over seeds
    where a method has several), and the method's seeds."""
    groups = _as_groups(runs)
    modes = modes_of([run for g in groups for run in g.runs.values()])
    rows = ["| method | setup | " + " | ".join(modes) + " | overall | seeds |", "|" + "---|" * (len(modes) + 4)]
    for g in groups:
        cells = [f"{v[0]:.2f} +- {v[1]:.2f}" if (v := g.accuracy(m)) else "-" for m in modes]
        o = g.accuracy()
        rows.append(f"| {g.label} | {g.setup} | " + " | ".join(cells) + f" | {o[0]:.2f} +- {o[1]:.2f} | "
                    f"{_seeds_text(g.seeds)} |")
    return "\n".join(rows)


def per_seed_table(groups: list[MethodRuns]) -> str:
    """Each seed's accuracies of the methods with several seeds (``""`` when none has)."""
    modes = modes_of([run for g in groups for run in g.runs.values()])
    rows = ["| method | seed | " + " | ".join(modes) + " | overall |", "|" + "---|" * (len(modes) + 3)]
    for g in groups:
        if len(g.runs) < 2:
            continue
        for seed, run in g.runs.items():
            cells = [f"{v['accuracy']:.2f} +- {v['ci95']:.2f}" if (v := run.results["per_mode"].get(m)) else "-"
                     for m in modes]
            o = run.results["overall"]
            rows.append(f"| {g.label} | {seed} | " + " | ".join(cells) + f" | {o['accuracy']:.2f} +- {o['ci95']:.2f} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def _baseline_index(groups: list[MethodRuns], baseline: str | None) -> int:
    if not baseline:
        return 0
    for i, g in enumerate(groups):
        if baseline in (g.label, g.method):
            return i
    for i, g in enumerate(groups):
        if any(path == Path(baseline) or path.name == baseline for path in g.paths):
            return i
    names = ", ".join(dict.fromkeys(g.label for g in groups))
    raise KmlError(
        f"baseline={baseline!r} is none of the compared runs; use one of the methods ({names}) or a run directory"
    )


def _missing_tasks(run: RunRecord) -> str:
    return (f"{run.path} has no {TASK_ACCURACIES}; re-evaluate it with {command('eval')} "
            f"run_dir={run.path} output={run.path / 'results.json'}")


def _paths_entry(g: MethodRuns) -> dict:
    """``{"run_dir": path}`` for one run, ``{"run_dirs": {seed: path}}`` for several."""
    if len(g.runs) == 1:
        return {"run_dir": str(g.paths[0])}
    return {"run_dirs": {str(seed): str(run.path) for seed, run in g.runs.items()}}


def _contrast(g: MethodRuns, base: MethodRuns) -> Contrast:
    """``g - base`` over the seeds both have; one run each: those two runs, whatever their seeds
    (filed under ``g``'s seed)."""
    if len(g.runs) == 1 and len(base.runs) == 1:
        (seed, run), (other,) = next(iter(g.runs.items())), base.runs.values()
        return contrast_over_seeds(g.label, base.label, {seed: run.tasks}, {seed: other.tasks})
    common = [seed for seed in g.runs if seed in base.runs]
    result = contrast_over_seeds(g.label, base.label, {s: r.tasks for s, r in g.runs.items()},
                                 {s: r.tasks for s, r in base.runs.items()})
    if not common:
        result.error = (f"{g.label} (seeds {_seeds_text(g.seeds)}) and {base.label} (seeds {_seeds_text(base.seeds)}) "
                        "share no training seed; train them with common train.seed values to pair them")
    return result


def paired_comparisons(runs: list[RunRecord] | list[MethodRuns], baseline: str | None = None) -> dict:
    """Each method's paired difference from the baseline method (a method name or a run
    directory of it; default: the first method), on the tasks both were tested on: per
    training seed both have, and across those seeds (:class:`kml.analysis.seeds.Contrast`).
    The baseline is never compared with itself, nor are a method's seeds with each other.

    Returns:
        ``{"baseline": {"method", "seeds", "run_dir" | "run_dirs"}, "test", "comparisons":
        [...]}``; each comparison has ``"method"``, ``"seeds"`` (paired),
        ``"baseline_seeds"``, ``"unpaired_seeds"`` (the method's seeds the baseline lacks,
        when there are any), ``"run_dir"`` (one run) or ``"run_dirs"`` (``{seed: path}``),
        ``"per_seed"`` (``{seed: compare_task_records(...)}``) and, with several paired
        seeds, ``"across_seeds"`` (``{"overall", "per_mode"}``, each
        :meth:`kml.analysis.seeds.AcrossSeeds.as_dict`); with one paired seed also that
        seed's ``"per_mode"``, ``"overall"`` and ``"overall_stratified"``; or ``"error"``.
    """
    groups = _as_groups(runs)
    base = groups[_baseline_index(groups, baseline)]
    out = {"baseline": {"method": base.label, "seeds": base.seeds, **_paths_entry(base)},
           "test": "paired t-test, two-sided; across seeds: t-interval and one-sample t-test over seeds",
           "comparisons": []}
    for g in groups:
        if g is base:
            continue
        entry = {"method": g.label, **_paths_entry(g)}
        missing = [run for run in [*g.runs.values(), *base.runs.values()] if run.tasks is None]
        if missing:
            entry.update({"seeds": [], "baseline_seeds": base.seeds, "error": _missing_tasks(missing[0])})
            out["comparisons"].append(entry)
            continue
        cmp = _contrast(g, base)
        record = cmp.as_dict()
        alone = len(g.runs) == 1 and len(base.runs) == 1  # paired whatever their seeds
        entry.update({"seeds": record["seeds"], "baseline_seeds": base.seeds if alone else record["seeds"],
                      "per_seed": record["per_seed"]})
        unpaired = [seed for seed in g.seeds if not alone and str(seed) not in record["per_seed"]]
        if unpaired:
            entry["unpaired_seeds"] = unpaired
        if "across_seeds" in record:
            entry["across_seeds"] = record["across_seeds"]
        if len(cmp.per_seed) == 1:
            entry.update(next(iter(cmp.per_seed.values())))
        if cmp.error:
            entry["error"] = cmp.error
        out["comparisons"].append(entry)
    return out


def format_p(p: float) -> str:
    """A p-value for a table: ``<1e-4`` below that, else 2 significant digits."""
    if p != p:  # nan
        return "-"
    return "<1e-4" if p < 1e-4 else f"{p:.2g}"


def _contrast_of(entry: dict) -> Contrast:
    """The :class:`Contrast` of one comparison entry of :func:`paired_comparisons`."""
    return Contrast(entry["method"], "", dict(entry["per_seed"]))


def paired_table(paired: dict) -> str:
    """Markdown: one row per method, ``difference +- ci95`` per mode and overall (across
    seeds where several are paired), the paired seeds, tasks and p."""
    comparisons = paired["comparisons"]
    modes: list[str] = []
    for c in comparisons:
        for cmp in (c.get("per_seed") or {}).values():
            modes += [m for m in cmp["per_mode"] if m not in modes]
    base = paired["baseline"]["method"]
    header = f"| method - {base} | " + " | ".join(modes) + " | overall | seeds | tasks | p (overall) |"
    rows = [header, "|" + "---|" * (len(modes) + 5)]
    for c in comparisons:
        if "error" in c:
            rows.append(f"| {c['method']} | " + " | ".join("-" for _ in modes) + f" | {c['error']} | - | - | - |")
            continue
        cmp = _contrast_of(c)
        cells = [f"{h[0]:+.2f} +- {h[1]:.2f}" if (h := cmp.headline(m)) else "-" for m in modes]
        mean, ci, over = cmp.headline()
        first = next(iter(cmp.per_seed.values()))["overall"]
        if over == "seeds":
            p, tasks = cmp.across().p_value, f"{first['tasks']} per seed"
        else:
            p, tasks = first["p_value"], str(first["tasks"])
        seeds = _seeds_text(c["seeds"])
        if c["baseline_seeds"] != c["seeds"]:
            seeds += f" vs {_seeds_text(c['baseline_seeds'])}"
        if c.get("unpaired_seeds"):
            seeds += f" ({_seeds_text(c['unpaired_seeds'])} unpaired)"
        rows.append(f"| {c['method']} | " + " | ".join(cells)
                    + f" | **{mean:+.2f} +- {ci:.2f}** | {seeds} | {tasks} | {format_p(p)} |")
    return "\n".join(rows)


def paired_per_seed_table(paired: dict) -> str:
    """Each paired seed's differences of the comparisons with several seeds (``""`` when none has)."""
    several = [c for c in paired["comparisons"] if len(c.get("per_seed") or {}) > 1]
    if not several:
        return ""
    modes: list[str] = []
    for c in several:
        for cmp in c["per_seed"].values():
            modes += [m for m in cmp["per_mode"] if m not in modes]
    base = paired["baseline"]["method"]
    rows = [f"| method - {base} | seed | " + " | ".join(modes) + " | overall | tasks | p |",
            "|" + "---|" * (len(modes) + 5)]
    for c in several:
        for seed, r in c["per_seed"].items():
            cells = [f"{d['difference']:+.2f} +- {d['ci95']:.2f}" if (d := r["per_mode"].get(m)) else "-"
                     for m in modes]
            o = r["overall"]
            rows.append(f"| {c['method']} | {seed} | " + " | ".join(cells)
                        + f" | {o['difference']:+.2f} +- {o['ci95']:.2f} | {o['tasks']} | {format_p(o['p_value'])} |")
    return "\n".join(rows)


def default_output(now: float | None = None) -> Path:
    """``outputs/compare/<YYYY-MM-DD_HH-MM-SS>/comparison.md`` (local time of ``now``,
    default: now), in a folder no earlier comparison used (``_1``, ``_2``, ... appended)."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(now))
    folder, count = Path("outputs") / "compare" / stamp, 0
    while folder.exists():
        count += 1
        folder = folder.with_name(f"{stamp}_{count}")
    return folder / "comparison.md"


_ACCURACY_NOTE = (
    "Accuracy in percent. A method with several training seeds: the mean over its seeds +- the t-interval over "
    "seeds (t_0.975,n-1 * sd / sqrt(n)); one seed: its accuracy +- 1.96 sd / sqrt(n) over its test tasks."
)
_PAIRED_NOTE = (
    "on the identical test tasks (accuracy points). One pair of runs: mean of the per-task differences +- "
    "1.96 sd / sqrt(n), p from the two-sided paired t-test; several seeds: each training seed's runs paired, "
    "then the mean over seeds +- the t-interval over seeds, p from a one-sample t-test over seeds"
)


def write_comparison(patterns: list[str], output: str | Path | None = None, baseline: str | None = None,
                     log=logger.info) -> str:
    """Collect runs, print the comparison table and the paired differences from the
    baseline, and write them: ``output`` (markdown; default :func:`default_output`),
    ``<output>.json`` (the runs' accuracies, one entry per run) and
    ``<output stem>_paired.json`` (the paired differences, :func:`paired_comparisons`).

    Raises:
        KmlError: no runs, a run without records, an unknown baseline, or ``output``
            naming a folder.
    """
    from kml.io import atomic_write_json, atomic_write_text

    if not patterns:
        raise KmlError("run_dirs is empty: pass run directories or globs, e.g. run_dirs='[outputs/2026-11-26/*]'")
    output = default_output() if output in (None, "") else Path(output)
    if output.is_dir():
        raise KmlError(f"output={output} is a folder; pass a file path such as output={output / 'comparison.md'}")
    runs = collect_runs(patterns)
    groups = group_runs(runs)
    text = comparison_table(groups)
    per_seed = per_seed_table(groups)
    if per_seed:
        text += "\n\n" + _ACCURACY_NOTE + " Per seed:\n\n" + per_seed
    paired = None
    if len(groups) > 1:
        paired = paired_comparisons(groups, baseline)
        text += (f"\n\nPaired differences from {paired['baseline']['method']} {_PAIRED_NOTE}:\n\n"
                 + paired_table(paired))
        per_seed_paired = paired_per_seed_table(paired)
        if per_seed_paired:
            text += "\n\nPer seed:\n\n" + per_seed_paired
    atomic_write_text(output, text + "\n")
    atomic_write_json(
        output.with_suffix(".json"),
        [
            {"run_dir": str(r.path), "method": r.method, "seed": r.seed, "mode": r.results["mode"],
             "eval": r.results["eval"], "overall": r.results["overall"], "per_mode": r.results["per_mode"]}
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
