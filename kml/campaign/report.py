"""The results report (``docs/results.md`` and its figures), built from the committed
records in ``results/`` alone: no checkpoint and no dataset is needed to rebuild it.

First, the claims table: one row per claim of the paper and setting, with the paper's
figure, ours and a verdict by a stated rule. Then, for every campaign and setting (mode
mixture and shots; the training seeds within it): the data the runs used (from the
prepared data's manifests, as recorded), the table of methods per mode and overall
(across seeds where a method has several), every method's paired difference from the
baseline (and the campaign's extra pairs) on the identical test tasks, across seeds with
the per-seed figures below, the campaign's ablation table, a bar chart and a forest plot
with the paper's values as markers, the validation curves and, where the campaign has
them, the transference histograms and modulation diagnostics. Budget, hardware and the
command of every number close each section. Statistics: :mod:`kml.analysis.paired`
(over tasks) and :mod:`kml.analysis.seeds` (over seeds, verdicts).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from kml.analysis.comparison import RunRecord, format_p, modes_of, read_run_record
from kml.analysis.seeds import Contrast, accuracy_over_seeds, contrast_over_seeds, verdict
from kml.errors import KmlError
from kml.io import atomic_write_text
from kml.plotting import save_figure, subplots

logger = logging.getLogger(__name__)

__all__ = [
    "CampaignRecords",
    "Contrast",
    "load_campaigns",
    "write_report",
    "campaign_section",
    "claims_section",
    "setting_contrasts",
]


@dataclass
class CampaignRecords:
    """A campaign's spec and the records of its finished runs."""

    name: str
    spec: dict
    folder: Path
    runs: list[RunRecord] = field(default_factory=list)
    records: dict[str, dict] = field(default_factory=dict)  # run folder name -> record.json
    transference: dict | None = None
    diagnostics: dict | None = None
    data: dict | None = None  # data.json: the campaign's prepared data

    def method_order(self) -> list[str]:
        return [m["name"] for m in self.spec.get("methods", [])]


def load_campaigns(results_dir: Path) -> list[CampaignRecords]:
    """Every campaign with records under ``results_dir`` (``<campaign>/campaign.yaml``)."""
    campaigns = []
    if not results_dir.is_dir():
        return campaigns
    for spec_path in sorted(results_dir.glob("*/campaign.yaml")):
        folder = spec_path.parent
        spec = OmegaConf.to_container(OmegaConf.load(spec_path), resolve=True)
        c = CampaignRecords(name=spec.get("name", folder.name), spec=spec, folder=folder)
        order = {name: i for i, name in enumerate(c.method_order())}
        for run_dir in sorted(p for p in folder.iterdir() if (p / "results.json").is_file()):
            c.runs.append(read_run_record(run_dir))
            record = run_dir / "record.json"
            c.records[run_dir.name] = json.loads(record.read_text()) if record.is_file() else {}
        c.runs.sort(key=lambda r: (order.get(_name(c, r), 99), _seed(c, r)))
        for attribute, name in (("transference", "transference.json"), ("diagnostics", "modulation_diagnostics.json"),
                                ("data", "data.json")):
            path = folder / name
            if path.is_file():
                setattr(c, attribute, json.loads(path.read_text()))
        campaigns.append(c)
    campaigns.sort(key=lambda c: (c.spec.get("order", 0), c.name))
    return campaigns


# ------------------------------------------------------------------ helpers
def _name(c: CampaignRecords, run: RunRecord) -> str:
    """The campaign's display name of a run's method (e.g. Multi-ProtoNet)."""
    return c.records.get(run.path.name, {}).get("method", run.method)


def _seed(c: CampaignRecords, run: RunRecord) -> int:
    return int(c.records.get(run.path.name, {}).get("seed", run.results["config"]["train"]["seed"]))


Setting = dict  # {seed: [RunRecord, ...]} of one (mode, shots)


def _settings(c: CampaignRecords) -> dict[tuple[str, int], Setting]:
    """Runs grouped by setting ``(mode, shots)``, then by training seed (ascending)."""
    groups: dict[tuple[str, int], dict[int, list[RunRecord]]] = {}
    for run in c.runs:
        key = (run.results["mode"], int(run.results["eval"]["shots"]))
        groups.setdefault(key, {}).setdefault(_seed(c, run), []).append(run)
    return {key: dict(sorted(by_seed.items())) for key, by_seed in groups.items()}


def _methods(c: CampaignRecords, setting: Setting) -> list[str]:
    """The methods of a setting, in the campaign's order."""
    present = {_name(c, r) for runs in setting.values() for r in runs}
    order = c.method_order()
    return sorted(present, key=lambda n: order.index(n) if n in order else len(order))


def _runs_of(c: CampaignRecords, setting: Setting, method: str) -> dict[int, RunRecord]:
    """``{seed: run}`` of one method in a setting."""
    return {seed: r for seed, runs in setting.items() for r in runs if _name(c, r) == method}


def _rel(path: Path, report: Path) -> str:
    return os.path.relpath(path, report.parent).replace(os.sep, "/")


def _paper_value(c: CampaignRecords, method: str, shots: int | None = None) -> float | None:
    """The paper's accuracy of ``method`` in the campaign's paper setting, for ``shots``
    (``paper.by_shots`` when the campaign has several shots, else ``paper.values``)."""
    paper = c.spec.get("paper") or {}
    by_shots = paper.get("by_shots") or {}
    if shots is not None and (shots in by_shots or str(shots) in by_shots):
        return (by_shots.get(shots) or by_shots.get(str(shots)) or {}).get(method)
    first = (c.spec.get("shots") or [1])[0]
    if shots is not None and shots != first:
        return None
    return (paper.get("values") or {}).get(method)


def paper_setting(paper: dict, shots: int) -> str:
    """The paper's setting as the campaign describes it, with ``{shots}`` replaced by the
    section's shots (a campaign with several shots compares each with the paper's table
    of the same shots)."""
    return str(paper.get("setting", "")).replace("{shots}", str(shots))


def _paper_difference(c: CampaignRecords, a: str, b: str, shots: int) -> float | None:
    pa, pb = _paper_value(c, a, shots), _paper_value(c, b, shots)
    return pa - pb if pa is not None and pb is not None else None


def code_marks(c: CampaignRecords, run: RunRecord) -> str:
    """`` ‡`` for a run trained from uncommitted code, `` †`` for one resumed on another
    commit (from its record, or its ``run_info.json`` for records that predate that)."""
    from kml.campaign.runner import run_code

    code = c.records.get(run.path.name, {}).get("code") or run_code(run.path)
    return (" ‡" if code.get("dirty") else "") + (" †" if code.get("commit_changed") else "")


def runs_marks(c: CampaignRecords, runs) -> str:
    """The :func:`code_marks` of several runs together, e.g. `` ‡`` ("" when all were
    trained from committed code on one commit)."""
    marks = "".join(sorted({mark for r in runs for mark in code_marks(c, r).split()}))
    return f" {marks}" if marks else ""


def contrast_marks(c: CampaignRecords, setting: Setting, cmp: Contrast) -> str:
    """The marks of the runs a contrast rests on (both methods, its seeds)."""
    return runs_marks(c, [r for m in (cmp.a, cmp.b) for seed, r in _runs_of(c, setting, m).items()
                          if seed in cmp.seeds])


CODE_MARKS_NOTE = (
    "‡: trained from a work tree with uncommitted changes (`run_info.json`: `git_dirty`), so its exact code is not "
    "in git. †: resumed on another commit than it started on (`run_info.json`: `resumes`)."
)


def _signed(value: float) -> str:
    return f"{round(value, 2) + 0.0:+.2f}"


def _color(k: int, n: int):
    """The colour of series ``k`` of ``n``: the default cycle, or ``tab20`` for many series."""
    if n <= 10:
        return f"C{k}"
    from matplotlib import colormaps

    return colormaps["tab20"](k % 20)


def _seeds_text(seeds) -> str:
    return ", ".join(str(s) for s in seeds)


# ------------------------------------------------------------------ contrasts
def contrast(c: CampaignRecords, setting: Setting, a: str, b: str) -> Contrast:
    """:class:`Contrast` of methods ``a`` and ``b`` over the seeds both have in ``setting``."""
    runs_a, runs_b = _runs_of(c, setting, a), _runs_of(c, setting, b)
    return contrast_over_seeds(a, b, {seed: r.tasks for seed, r in runs_a.items()},
                               {seed: r.tasks for seed, r in runs_b.items()})


def setting_contrasts(c: CampaignRecords, setting: Setting) -> list[Contrast]:
    """Every method against the campaign's baseline, then the campaign's extra pairs, each
    once, where both methods have runs in ``setting``."""
    methods = _methods(c, setting)
    base = c.spec.get("baseline")
    pairs: list[tuple[str, str]] = []
    if base in methods:
        pairs += [(m, base) for m in methods if m != base]
    for a, b in c.spec.get("pairs") or []:
        if a in methods and b in methods and (a, b) not in pairs:
            pairs.append((a, b))
    out = []
    for a, b in pairs:
        cmp = contrast(c, setting, a, b)
        if cmp.per_seed or cmp.error != "no common seed":
            out.append(cmp)
    return out


def _cell(value: tuple[float, float, str] | None) -> str:
    if value is None:
        return "-"
    mean, ci, _ = value
    return f"{_signed(mean)} ± {ci:.2f}"


def paired_section(c: CampaignRecords, setting: Setting, contrasts: list[Contrast]) -> str:
    """The headline paired table (across seeds where there are several), a sentence per
    contrast, and the per-seed table of the contrasts with several seeds. A contrast that
    rests on a run trained from uncommitted code or on two commits carries its marks."""
    modes: list[str] = []
    for cmp in contrasts:
        modes += [m for m in cmp.modes() if m not in modes]
    rows = [
        "| comparison | "
        + " | ".join(modes)
        + " | **overall** | stratified by mode | seeds | p | wins / losses / ties |",
        "|" + "---|" * (len(modes) + 6),
    ]
    sentences = []
    marked = False
    for cmp in contrasts:
        marks = contrast_marks(c, setting, cmp)
        marked = marked or bool(marks)
        label = f"{cmp.a} − {cmp.b}{marks}"
        if not cmp.per_seed:
            rows.append(f"| {label} | " + " | ".join("-" for _ in modes) + f" | {cmp.error} | - | - | - | - |")
            continue
        cells = [_cell(cmp.headline(m)) for m in modes]
        mean, ci, over = cmp.headline()
        if over == "seeds":
            s = cmp.across()
            stratified, p, wlt = "-", format_p(s.p_value), "-"
        else:
            o = next(iter(cmp.per_seed.values()))["overall"]
            st = next(iter(cmp.per_seed.values())).get("overall_stratified")
            stratified = f"± {st['ci95']:.2f}" if st else "-"
            p, wlt = format_p(o["p_value"]), f"{o['wins']} / {o['losses']} / {o['ties']}"
        rows.append(f"| {label} | " + " | ".join(cells) + f" | **{_signed(mean)} ± {ci:.2f}** | {stratified} | "
                    f"{_seeds_text(cmp.seeds)} | {p} | {wlt} |")
        word = verdict(mean - ci, mean + ci)
        what = {"holds": f"{cmp.a} is better overall", "does not hold": f"{cmp.a} is worse overall",
                "not established": "no difference established overall"}[word]
        over_text = (f"t-interval over {len(cmp.seeds)} seeds" if over == "seeds"
                     else f"seed {cmp.seeds[0]}, {next(iter(cmp.per_seed.values()))['overall']['tasks']} paired tasks")
        better = [m for m in modes if (h := cmp.headline(m)) and h[0] - h[1] > 0]
        worse = [m for m in modes if (h := cmp.headline(m)) and h[0] + h[1] < 0]
        detail = "; ".join(x for x in (f"better on {', '.join(better)}" if better else "",
                                         f"worse on {', '.join(worse)}" if worse else "") if x)
        sentences.append(f"- **{label}: {_signed(mean)} ± {ci:.2f} points** ({over_text}): {what}"
                         + (f" ({detail} at 95%)" if detail else "") + ".")
    text = "\n".join(rows) + ("\n\n" + CODE_MARKS_NOTE if marked else "") + "\n\n" + "\n".join(sentences)
    several = [cmp for cmp in contrasts if len(cmp.per_seed) > 1]
    if several:
        rows = [
            "| comparison | seed | " + " | ".join(modes) + " | **overall** | stratified by mode | p |",
            "|" + "---|" * (len(modes) + 5),
        ]
        for cmp in several:
            for seed, r in cmp.per_seed.items():
                cells = [f"{_signed(r['per_mode'][m]['difference'])} ± {r['per_mode'][m]['ci95']:.2f}"
                         if m in r["per_mode"] else "-" for m in modes]
                o, st = r["overall"], r.get("overall_stratified") or {}
                rows.append(f"| {cmp.a} − {cmp.b} | {seed} | " + " | ".join(cells)
                            + f" | {_signed(o['difference'])} ± {o['ci95']:.2f} | "
                            + (f"± {st['ci95']:.2f}" if st else "-") + f" | {format_p(o['p_value'])} |")
        text += ("\n\nPer seed (each seed's paired mean over its tasks ± 1.96 sd / sqrt(n), pooled over modes "
                 "and stratified by mode):\n\n" + "\n".join(rows))
    return text


def seed_spread(contrasts: list[Contrast]) -> float | None:
    """The spread between training seeds of a two-run contrast: the root mean square of
    the across-seed standard deviations of the overall paired differences of every
    contrast with several seeds (``None`` without one)."""
    sds = [cmp.across().sd for cmp in contrasts if len(cmp.per_seed) > 1]
    return float(np.sqrt(np.mean(np.square(sds)))) if sds else None


def ablation_section(c: CampaignRecords, setting: Setting, spread: float | None) -> str:
    """The campaign's ablation rows (``[method, reference, what changes]``) present in
    ``setting``: each a paired contrast, set against the seed spread."""
    rows_spec = [row for row in c.spec.get("ablation") or [] if len(row) == 3]
    methods = _methods(c, setting)
    present = [row for row in rows_spec if row[0] in methods and row[1] in methods]
    if not present:
        return ""
    lines = [
        "#### Ablation: the published protocol, part by part",
        "",
        "Each row changes one thing against a reference run, paired on the identical test tasks. "
        + (f"The spread between training seeds of a two-run contrast is **{spread:.2f}** points (root mean "
           "square of the across-seed standard deviations of this setting's contrasts with several seeds); "
           "by our rule a change counts only when its difference exceeds twice that spread. "
           if spread is not None else
           "No contrast of this setting has several seeds, so the seed spread is not known here; "
           "differences below about a point are not claims. ")
        + "The options are described in docs/modulation.md (\"The published protocol\").",
        "",
        "| what changes | comparison | **overall** | stratified by mode | seeds | vs seed spread |",
        "|---|---|---|---|---|---|",
    ]
    for a, b, what in present:
        cmp = contrast(c, setting, a, b)
        if not cmp.per_seed:
            lines.append(f"| {what} | {a} − {b} | {cmp.error} | - | - | - |")
            continue
        mean, ci, over = cmp.headline()
        if over == "seeds":
            stratified = "-"
        else:
            st = next(iter(cmp.per_seed.values())).get("overall_stratified")
            stratified = f"± {st['ci95']:.2f}" if st else "-"
        if spread is None:
            against = "unknown"
        else:
            against = "beyond" if abs(mean) > 2 * spread else "within"
        lines.append(f"| {what} | {a} − {b} | **{_signed(mean)} ± {ci:.2f}** | {stratified} | "
                     f"{_seeds_text(cmp.seeds)} | {against} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ accuracy tables
def _method_accuracy(c: CampaignRecords, setting: Setting, method: str, mode: str | None) -> tuple[float, float] | None:
    """A method's accuracy (overall or of ``mode``) in a setting: the mean over its seeds ±
    the t-interval over seeds, or with one seed its accuracy ± its CI over tasks."""
    runs = _runs_of(c, setting, method)
    return accuracy_over_seeds([r.results["overall"] if mode is None else r.results["per_mode"].get(mode)
                                for r in runs.values()])


def accuracy_table(c: CampaignRecords, setting: Setting, shots: int) -> str:
    all_runs = [r for runs in setting.values() for r in runs]
    modes = modes_of(all_runs)
    paper_col = any(_paper_value(c, m, shots) is not None for m in _methods(c, setting))
    header = "| method | " + " | ".join(modes) + " | **overall** | seeds | tested |" + (" paper |" if paper_col else "")
    rows = [header, "|" + "---|" * (len(modes) + 4 + paper_col)]
    marked = False
    for method in _methods(c, setting):
        runs = _runs_of(c, setting, method)
        cells = []
        for m in modes:
            v = _method_accuracy(c, setting, method, m)
            cells.append(f"{v[0]:.2f} ± {v[1]:.2f}" if v else "-")
        o = _method_accuracy(c, setting, method, None)
        first = next(iter(runs.values()))
        tested = first.results.get("checkpoint", "last")
        its = first.results.get("checkpoint_iterations") or first.results.get("iterations", {})
        tested += " (" + ", ".join(f"{k}: {v}" if k != "all" else str(v) for k, v in its.items()) + ")"
        marks = runs_marks(c, runs.values())
        marked = marked or bool(marks)
        row = (f"| {method}{marks} | " + " | ".join(cells)
               + f" | **{o[0]:.2f} ± {o[1]:.2f}** | {_seeds_text(runs)} | {tested} |")
        if paper_col:
            value = _paper_value(c, method, shots)
            row += f" {value:.2f} |" if value is not None else " - |"
        rows.append(row)
    if marked:
        rows += ["", CODE_MARKS_NOTE]
    return "\n".join(rows)


def per_seed_accuracy_table(c: CampaignRecords, setting: Setting) -> str:
    """The accuracy of each seed of the methods with several seeds ("" when none has)."""
    all_runs = [r for runs in setting.values() for r in runs]
    modes = modes_of(all_runs)
    rows = ["| method | seed | " + " | ".join(modes) + " | **overall** |", "|" + "---|" * (len(modes) + 3)]
    for method in _methods(c, setting):
        runs = _runs_of(c, setting, method)
        if len(runs) < 2:
            continue
        for seed, run in runs.items():
            cells = [f"{run.results['per_mode'][m]['accuracy']:.2f} ± {run.results['per_mode'][m]['ci95']:.2f}"
                     if m in run.results["per_mode"] else "-" for m in modes]
            o = run.results["overall"]
            rows.append(f"| {method} | {seed} | " + " | ".join(cells) + f" | {o['accuracy']:.2f} ± {o['ci95']:.2f} |")
    return "\n".join(rows) if len(rows) > 2 else ""


# ------------------------------------------------------------------ data
def _count_text(entry: dict, official_per_class: int | None) -> str:
    """``"16 classes × 100 of 600 images each"``; ``"123 of 140 classes × 50 of 500 images
    each"`` where the mixture drops classes (the manifest's per-class range)."""
    used = entry.get("used") or {"classes": entry["classes"], "images": entry["images"]}
    if used["classes"] == 0:
        return "none"
    classes = (f"{used['classes']} of {entry['classes']} classes" if used["classes"] != entry["classes"]
               else f"{used['classes']} classes")
    per_class = entry.get("images_per_class") or {}
    lo, hi = per_class.get("min"), per_class.get("max")
    span = f"{lo}" if lo == hi else f"{lo}-{hi}"
    if official_per_class and lo == hi and lo != official_per_class:
        span += f" of {official_per_class}"
    return f"{classes} × {span} images each"


def _official(name: str, entry: dict) -> dict:
    """The official size of a dataset: from the record, else from the library's spec."""
    if entry.get("official"):
        return entry["official"]
    from kml.data.datasets import REAL_SPECS

    spec = REAL_SPECS.get(name)
    return {"classes": getattr(spec, "official_classes", None),
            "images_per_class": getattr(spec, "official_images_per_class", None)}


def data_section(c: CampaignRecords) -> str:
    """What data the campaign's runs used, from their records (``run_info.json``: ``data``)
    or, for runs that predate those, the campaign's ``data.json``."""
    recorded: dict[str, dict[str, set]] = {}
    source = None
    with_data = 0
    for run in c.runs:
        info_path = run.path / "run_info.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        if info.get("data"):
            with_data += 1
            source = source or info["data"]
            for name, entry in info["data"].items():
                recorded.setdefault(name, {"sha": set()})["sha"].add(entry.get("sha256"))
    datasets = source or (c.data or {}).get("datasets")
    if not datasets:
        return ("#### Data\n\nNo record of the prepared data: these runs predate per-run data records, and no "
                "`data.json` was written where they ran. The description above says what data they used.\n")
    lines = [
        "#### Data",
        "",
        "Classes and images per class of each split, as the prepared data's manifests record them "
        + ("(from the runs' own records, `run_info.json`)." if source else
           "(from `data.json`: the same datasets prepared by `kml-prepare` at this campaign's image size; these "
           "runs predate per-run data records)."),
        "",
        "| dataset | train | val | test | of the full dataset |",
        "|---|---|---|---|---|",
    ]
    for name, entry in datasets.items():
        official = _official(name, entry)
        cells = [_count_text(entry["splits"][s], official.get("images_per_class")) if s in entry["splits"] else "-"
                 for s in ("train", "val", "test")]
        total = sum(entry["splits"][s]["classes"] for s in entry["splits"])
        full = []
        if official.get("classes"):
            full.append(f"{total} of {official['classes']} classes")
        if official.get("images_per_class"):
            full.append(f"{official['images_per_class']} images per class")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {', '.join(full) or '-'} |")
    lines.append("")
    hashes = ", ".join(f"{name} `{entry['sha256'][:12]}`" for name, entry in datasets.items())
    if source:
        same = all(len(v["sha"]) == 1 for v in recorded.values())
        lines.append(f"{with_data} of {len(c.runs)} runs recorded their data; "
                     + ("all of them saw identical prepared arrays" if same else
                        "their prepared arrays differ: " + "; ".join(
                            f"{n}: {len(v['sha'])} versions" for n, v in recorded.items() if len(v["sha"]) > 1))
                     + f" (SHA-256 prefixes: {hashes}).")
        campaign_data = (c.data or {}).get("datasets") or {}
        if with_data < len(c.runs) and campaign_data:
            older = len(c.runs) - with_data
            differ = [n for n, e in campaign_data.items() if recorded.get(n, {}).get("sha") != {e.get("sha256")}]
            lines[-1] += (f" The other {older} predate per-run data records; the campaign's `data.json` (written by "
                          "the runner where it last ran, not by those runs) has "
                          + ("the same hashes." if not differ else f"other arrays for {', '.join(differ)}."))
    else:
        lines.append(f"SHA-256 prefixes of those prepared arrays: {hashes}.")
    lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------ figures
def accuracy_figure(c: CampaignRecords, setting: Setting, shots: int, path: Path, title: str) -> Path:
    """Accuracy per mode and overall, one bar per method (mean over its seeds), with the
    paper's values as markers."""
    all_runs = [r for runs in setting.values() for r in runs]
    modes = modes_of(all_runs)
    groups = modes + ["overall"]
    methods = _methods(c, setting)
    width = 0.8 / max(1, len(methods))
    fig, ax = subplots(figsize=(max(7.0, 0.35 * len(groups) * len(methods) + 3), 4.2))
    x = np.arange(len(groups))
    labelled = False
    for k, method in enumerate(methods):
        stats = [_method_accuracy(c, setting, method, m) for m in modes] + [_method_accuracy(c, setting, method, None)]
        offset = (k - (len(methods) - 1) / 2) * width
        ax.bar(x + offset, [s[0] if s else np.nan for s in stats], width, yerr=[s[1] if s else 0 for s in stats],
               capsize=2, label=method, color=_color(k, len(methods)))
        paper = _paper_value(c, method, shots)
        if paper is not None:
            ax.plot([x[-1] + offset], [paper], marker="D", color="black", markersize=5, linestyle="none",
                    label=None if labelled else "paper (its setting)")
            labelled = True
    ways = all_runs[0].results["eval"]["ways"]
    ax.axhline(100.0 / ways, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x, groups, rotation=15)
    ax.set(ylabel="test accuracy (%) ± 95% CI", title=title, ylim=(0, 100))
    ax.legend(fontsize=6, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path, dpi=110)


def forest_figure(c: CampaignRecords, contrasts: list[Contrast], shots: int, path: Path, title: str) -> Path | None:
    """A forest plot of the paired contrasts: one row per contrast; per seed a point with
    its CI over tasks, across seeds a diamond with its t-interval, the paper's difference
    as a cross. One panel for the overall difference and one per mode."""
    contrasts = [cmp for cmp in contrasts if cmp.per_seed]
    if not contrasts:
        return None
    modes: list[str] = []
    for cmp in contrasts:
        modes += [m for m in cmp.modes() if m not in modes]
    panels = [None, *modes]
    columns = min(3, len(panels))
    rows_of_panels = -(-len(panels) // columns)
    height = 0.32 * len(contrasts) + 1.2
    fig, axes = subplots(rows_of_panels, columns, figsize=(4.6 * columns, height * rows_of_panels), sharey=True,
                         squeeze=False)
    y = np.arange(len(contrasts))[::-1]
    seeds = sorted({s for cmp in contrasts for s in cmp.seeds})
    for index, mode in enumerate(panels):
        ax = axes[index // columns][index % columns]
        for row, cmp in zip(y, contrasts):
            for j, seed in enumerate(cmp.seeds):
                r = cmp.per_seed[seed]
                entry = r["overall"] if mode is None else r["per_mode"].get(mode)
                if entry is None:
                    continue
                offset = 0.12 * (j - (len(cmp.seeds) - 1) / 2) if len(cmp.seeds) > 1 else 0.0
                ax.errorbar(entry["difference"], row + offset, xerr=entry["ci95"], fmt="o", markersize=3,
                            color=f"C{seeds.index(seed) % 10}", elinewidth=1, capsize=0)
            head = cmp.headline(mode)
            if head is not None and head[2] == "seeds":
                ax.errorbar(head[0], row - 0.3, xerr=head[1], fmt="D", markersize=5, color="black", elinewidth=1.8,
                            capsize=2)
            paper = _paper_difference(c, cmp.a, cmp.b, shots) if mode is None else None
            if paper is not None:
                ax.plot(paper, row, marker="x", color="red", markersize=7, mew=1.5, linestyle="none")
        ax.axvline(0, color="grey", linewidth=0.8)
        ax.set_title("overall" if mode is None else mode, fontsize=9)
        ax.set_xlabel("paired difference (points)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(labelsize=7)
    for index in range(len(panels), rows_of_panels * columns):
        axes[index // columns][index % columns].axis("off")
    for r in range(rows_of_panels):
        axes[r][0].set_yticks(y, [f"{cmp.a} − {cmp.b}" for cmp in contrasts], fontsize=7)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="none", color=f"C{i % 10}", label=f"seed {s} (CI over tasks)")
               for i, s in enumerate(seeds)]
    if any(len(cmp.seeds) > 1 for cmp in contrasts):
        handles.append(Line2D([], [], marker="D", linestyle="none", color="black", label="across seeds (t-interval)"))
    if any(_paper_difference(c, cmp.a, cmp.b, shots) is not None for cmp in contrasts):
        handles.append(Line2D([], [], marker="x", linestyle="none", color="red", label="paper (its setting)"))
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.suptitle(f"paired differences: {title}", fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return save_figure(fig, path, dpi=100)


def _metrics(run: RunRecord) -> dict[str, list[dict]]:
    """Metric records of a run (per specialist for Multi-* runs)."""
    from kml.engine.reporting import read_metrics

    specialists = run.path / "specialists"
    if specialists.is_dir():
        return {p.name: read_metrics(p) for p in sorted(specialists.iterdir()) if p.is_dir()}
    return {"": read_metrics(run.path)}


def curves_figure(c: CampaignRecords, runs: list[RunRecord], path: Path, title: str) -> Path | None:
    """Validation accuracy (overall; specialists per mode) and training accuracy against iterations."""
    fig, (ax_train, ax_val) = subplots(1, 2, figsize=(12, 4))
    any_val = False
    for k, run in enumerate(runs):
        color = _color(k, len(runs))
        for j, (part, records) in enumerate(_metrics(run).items()):
            label = _name(c, run) + (f" ({part})" if part else "")
            style = ("-", "--", ":", "-.")[j % 4]
            train = [r for r in records if "loss" in r]
            val = [r for r in records if "val" in r]
            if train:
                ax_train.plot([r["iteration"] for r in train], [r["accuracy"] for r in train], color=color,
                              linestyle=style, linewidth=1, label=label)
            if val:
                any_val = True
                ax_val.plot([r["iteration"] for r in val], [r["val"]["accuracy"] for r in val], color=color,
                            linestyle=style, marker="o", markersize=2.5, label=label)
    if not any_val and not any(ax_train.lines):
        return None
    ax_train.set(xlabel="iteration", ylabel="query accuracy (%)", title="meta-training accuracy (windows of log_every)")
    ax_val.set(xlabel="iteration", ylabel="val accuracy (%)", title="validation accuracy (fixed val tasks)")
    for ax in (ax_train, ax_val):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=6, ncol=2 if len(runs) > 8 else 1)
    fig.suptitle(title, y=1.02)
    save_figure(fig, path, dpi=110)
    return path


def transference_section(c: CampaignRecords, report: Path, figures_dir: Path) -> str:
    from kml.analysis.transference import transfer_shares
    from kml.analysis.transference_plots import plot_lr_histograms

    t = c.transference
    s = t["settings"]
    lines = [
        "### Transference",
        "",
        f"LR_(i→j) of {s['sources']} {s['source_split']} tasks of {s['source_mode']} (sources) onto "
        f"{s['targets']} {s['target_split']} task(s) of {s['target_mode']} (target), at iterations "
        f"{', '.join(map(str, s['checkpoints']))}. LR < 1 is positive transfer, > 1 negative. "
        f"Source step size α = {s['alpha']:g} and neutral band |LR − 1| ≤ {s['neutral']:g} are **our choices**: the "
        "paper states neither (see docs/transference.md for how they were chosen).",
        "",
        "| method | iteration | positive | neutral | negative | LR range (min - max) | mean LR |",
        "|---|---|---|---|---|---|---|",
    ]
    figures = []
    for run in t["runs"]:
        panels = []
        for entry in run["checkpoints"]:
            lr = np.asarray(entry["lr"], dtype=np.float64).reshape(-1)
            shares = transfer_shares(lr, s["neutral"])
            lines.append(
                f"| {run['label']} | {entry['iteration']} | {shares.positive:.1f}% | {shares.neutral:.1f}% | "
                f"{shares.negative:.1f}% | {lr.min():.3f} - {lr.max():.3f} | {lr.mean():.3f} |"
            )
            panels.append((f"{entry['iteration']} iterations", lr))
        path = figures_dir / f"results_{c.name}_transference_{run['run_id']}.png"
        plot_lr_histograms(panels, path, s["neutral"], 40,
                           f"{run['label']}: {s['source_mode']} → {s['target_mode']} (α={s['alpha']:g})")
        figures.append((run["label"], path))
    lines.append("")
    for label, path in figures:
        lines.append(f"![LR histograms of {label}]({_rel(path, report)})")
        lines.append("")
    if t.get("alpha_sweep"):
        lines += [
            f"How the histograms depend on the source step alpha (iteration {t['alpha_sweep'][0]['iteration']}, "
            "same sources and target):",
            "",
            "| alpha | method | LR min - max | LR 5th - 95th percentile | positive / neutral / negative (%) |",
            "|---|---|---|---|---|",
        ]
        for e in t["alpha_sweep"]:
            lines.append(
                f"| {e['alpha']:g} | {e['label']} | {e['min']:.3f} - {e['max']:.3f} | {e['p5']:.3f} - {e['p95']:.3f} | "
                f"{e['positive']:.0f} / {e['neutral']:.0f} / {e['negative']:.0f} |"
            )
        lines.append("")
    machine = t.get("machine", {})
    lines.append(f"Computed in {t.get('seconds', 0):.0f} s on {_machine_text(machine)}.")
    return "\n".join(lines)


def diagnostics_section(c: CampaignRecords) -> str:
    """The modulation diagnostics as a table: per method, checkpoint and mode, the feature
    norm, the task embedding's spread across tasks and, per modulated layer, what its
    modulation reports (``summary`` of its layer class): FiLM's scale (mean, minimum, share
    negative) or KML's |W_hat/W - 1| (and its spread across tasks)."""
    d = c.diagnostics
    layers = max([len(stats.get("blocks", [])) for entry in d["runs"] for stats in entry["modes"].values()] + [1])
    lines = [
        "### What the modulation does",
        "",
        f"On the first {d['runs'][0]['tasks_per_mode']} test tasks of each mode "
        "(`kml.analysis.modulation`, `tools/modulation_diagnostics.py`): the norm of the query "
        "features, the spread across tasks of the task embedding, and per block FiLM's scale "
        "`1 + dgamma(v)` as mean (min, share < 0) or KML's `|W_hat / W - 1|` as mean (spread "
        "across tasks). *zeroed biases*: the largest relative change of the logits when every conv "
        "bias and `db(v)` is set to zero.",
        "",
        "| method | iteration | mode | feature norm | v spread | "
        + " | ".join(f"block {i + 1}" for i in range(layers)) + " | zeroed biases |",
        "|---|---|---|---|---|" + "---|" * layers + "---|",
    ]
    for entry in d["runs"]:
        for mode, stats in entry["modes"].items():
            cells = [_block_cell(block) for block in stats.get("blocks", [])]
            cells += ["-"] * (layers - len(cells))
            spread = stats.get("embedding", {}).get("task_spread")
            lines.append(
                f"| {entry['label']} | {entry['iteration']} | {mode} | {stats['feature_norm']:.2f} | "
                + (f"{spread:.3f}" if spread is not None else "-") + " | " + " | ".join(cells)
                + f" | {entry['bias_zeroed_logit_change']:.1e} |"
            )
    return "\n".join(lines)


def _block_cell(block: dict) -> str:
    """A layer's diagnostics as its modulation summarises them (``-`` for a modulation that
    is not registered in this process)."""
    from kml.modulation import get_modulation, list_modulations

    kind = block.get("kind")
    layer = get_modulation(kind) if kind in list_modulations() else None
    return layer.summary(block) if layer is not None else "-"


def _machine_text(machine: dict) -> str:
    if not machine:
        return "an unrecorded machine"
    if machine.get("gpu"):
        return f"{machine['gpu']} (torch {machine.get('torch')})"
    return (
        f"CPU {machine.get('cpu')} ({machine.get('cpu_count')} cores, "
        f"torch threads: {machine.get('torch_threads')}, torch {machine.get('torch')})"
    )




# ------------------------------------------------------------------ claims
#: the paper's claims on accuracy: (label, method kind a, method kind b); a > b is claimed
CLAIMS = (("KML > none", "kml", "none"), ("KML > FiLM", "kml", "film"), ("FiLM > none", "film", "none"),
          ("KML > Multi", "kml", "multi"))


def method_kinds(c: CampaignRecords) -> dict[str, str]:
    """The campaign's main method of each kind (``none``, ``film``, ``kml``, ``multi``): the
    first listed method with that modulation (or ``multi: true``) and no other change.
    Variants listed after it (another learning rate, another protocol) are not."""
    kinds: dict[str, str] = {}
    for method in c.spec.get("methods", []):
        kind = "multi" if method.get("multi") else method.get("modulation", "none")
        kinds.setdefault(kind, method["name"])
    return kinds


def _family(c: CampaignRecords) -> str:
    learners = {m.get("learner") for m in c.spec.get("methods", [])}
    return "ProtoNet family" if learners == {"protonet"} else "MAML family" if learners == {"maml"} else "mixed"


def _setting_label(c: CampaignRecords, mode: str, shots: int) -> str:
    budget = c.spec.get("budget", {})
    gpu = any((r.get("machine") or {}).get("gpu") for r in c.records.values())
    return (f"[{mode}, {shots}-shot](#{_anchor(c)}) ({'GPU' if gpu else 'CPU'}, {budget.get('image_size')}px, "
            f"{budget.get('iterations')} it.)")


def _claim_cells(cmp: Contrast) -> tuple[str, str, str]:
    """``(ours, seeds, verdict)`` of a claim's contrast: across seeds (t-interval over
    seeds) where it has several, else "one seed" with the paired CI over tasks."""
    mean, ci, over = cmp.headline()
    word = verdict(mean - ci, mean + ci)
    if over == "seeds":
        return f"**{_signed(mean)} ± {ci:.2f}**", f"{len(cmp.seeds)} ({_seeds_text(cmp.seeds)})", word
    return f"**{_signed(mean)} ± {ci:.2f}**", f"one seed ({cmp.seeds[0]})", word


def _transference_claims(c: CampaignRecords) -> list[str]:
    """The transference claims of a campaign with a transference record: KML gives more
    positive transfer than no modulation, and transfer grows more positive as training
    proceeds (paired over the same source tasks, which every checkpoint and method share;
    one seed)."""
    from kml.analysis.transference import POSITIVE, transfer_classes

    t = c.transference
    if not t:
        return []
    kinds = method_kinds(c)
    by_label = {run["label"]: run for run in t["runs"]}
    kml, none = by_label.get(kinds.get("kml")), by_label.get(kinds.get("none"))
    neutral = t["settings"]["neutral"]
    paper = ((c.spec.get("paper") or {}).get("transference_positive") or {})
    setting = (f"{c.name}: {t['settings']['source_mode']} → {t['settings']['target_mode']}, "
               f"{t['settings']['sources']} sources, α = {t['settings']['alpha']:g}")

    def positive(entry) -> np.ndarray:
        return (transfer_classes(np.asarray(entry["lr"], dtype=np.float64), neutral) == POSITIVE).reshape(-1)

    def paired(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        d = x.astype(np.float64) - y.astype(np.float64)
        return 100.0 * float(d.mean()), 100.0 * 1.96 * float(d.std(ddof=1)) / np.sqrt(d.size)

    def seed_of(run) -> str:
        match = re.search(r"_seed(\d+)$", run.get("run_id", ""))
        return f"one seed ({match.group(1)})" if match else "one seed"

    rows = []
    if kml is not None and none is not None:
        mean, ci = paired(positive(kml["checkpoints"][-1]), positive(none["checkpoints"][-1]))
        pa, pb = paper.get(kml["label"]), paper.get(none["label"])
        paper_text = f"{_signed(pa - pb)} ({pa:g} vs {pb:g} % positive)" if pa is not None and pb is not None else "-"
        rows.append(f"| KML: more positive transfer than none (share of LR < 1, last checkpoint, points) | {setting} "
                    f"| {paper_text} | **{_signed(mean)} ± {ci:.2f}** | {seed_of(kml)} "
                    f"| {verdict(mean - ci, mean + ci)} |")
    for run in (none, kml):  # the paper shows this for its histograms during training, without numbers
        if run is None or len(run["checkpoints"]) < 2:
            continue
        first, last = run["checkpoints"][0], run["checkpoints"][-1]
        mean, ci = paired(positive(last), positive(first))
        rows.append(f"| More positive transfer as training proceeds ({run['label']}: share of LR < 1 at "
                    f"{last['iteration']} − at {first['iteration']} iterations, points) | {setting} | histograms only, "
                    f"no number | **{_signed(mean)} ± {ci:.2f}** | {seed_of(run)} | {verdict(mean - ci, mean + ci)} |")
    return rows


def claims_section(campaigns: list[CampaignRecords]) -> str:
    """One row per claim of the paper and setting: the paper's figure (the difference of
    the same two methods in its column, in its own setting), ours and a verdict."""
    rows = ["| claim | setting | paper | ours | seeds | verdict |", "|---|---|---|---|---|---|"]
    marked = False
    for label, kind_a, kind_b in CLAIMS:
        for c in campaigns:
            kinds = method_kinds(c)
            if kind_a not in kinds or kind_b not in kinds:
                continue
            for (mode, shots), setting in _settings(c).items():
                cmp = contrast(c, setting, kinds[kind_a], kinds[kind_b])
                if not cmp.per_seed:
                    continue
                paper = _paper_difference(c, cmp.a, cmp.b, shots)
                ours, seeds, word = _claim_cells(cmp)
                marks = contrast_marks(c, setting, cmp)
                marked = marked or bool(marks)
                seeds += marks
                rows.append(f"| {label} ({_family(c)}: {cmp.a} − {cmp.b}) | {_setting_label(c, mode, shots)} | "
                            f"{_signed(paper) if paper is not None else '-'} | {ours} | {seeds} | {word} |")
    for c in campaigns:
        rows += _transference_claims(c)
    return "\n".join([
        "## Claims",
        "",
        "One row per claim of the paper and setting. *paper*: the difference of the same two methods in the "
        "paper's tables, in the paper's own setting (which differs from ours as each section says). *ours*: the "
        "paired difference on the identical test tasks, in accuracy points; with several training seeds the mean "
        "of the per-seed differences ± a Student-t interval over seeds (n − 1 degrees of freedom), with one seed "
        "the paired mean ± 1.96 sd / sqrt(n) over tasks, which covers the test tasks but not training. "
        "*verdict* (our rule): **holds** when the 95 % interval lies above 0, **does not hold** when it lies "
        "below 0, **not established** otherwise; a one-seed verdict says nothing about a new training run.",
        "",
        *rows,
        *(["", CODE_MARKS_NOTE] if marked else []),
    ])


# ------------------------------------------------------------------ sections
def campaign_section(c: CampaignRecords, report: Path, figures_dir: Path) -> tuple[str, dict]:
    """The markdown of one campaign and a machine-readable summary of its comparisons."""
    from kml.campaign.plan import planned_settings

    spec = c.spec
    budget = spec.get("budget", {})
    lines = [f'<a id="{_anchor(c)}"></a>', "", f"## {spec.get('title') or c.name}", ""]
    if spec.get("description"):
        lines += [spec["description"].strip(), ""]
    planned = len(planned_settings(spec))
    if len(c.runs) < planned:
        lines += [f"**Incomplete:** {len(c.runs)} of {planned} runs are recorded so far.", ""]
    data = data_section(c)
    if data:
        lines += [data]
    notes = c.folder / "notes.md"
    summary: dict = {"campaign": c.name, "settings": []}
    for (mode, shots), setting in _settings(c).items():
        all_runs = [r for runs in setting.values() for r in runs]
        ways = all_runs[0].results["eval"]["ways"]
        title = f"{mode}, {ways}-way {shots}-shot"
        lines += [f"### {title}", "", f"Training seeds: {_seeds_text(setting)}.", ""]
        paper = spec.get("paper") or {}
        if any(_paper_value(c, m, shots) is not None for m in _methods(c, setting)):
            lines += [f"Paper column: {paper_setting(paper, shots)}. {paper.get('note', '')}".strip(), ""]
        lines += [accuracy_table(c, setting, shots), ""]
        tasks = all_runs[0].results["eval"]["tasks_per_mode"]
        lines += [
            f"Accuracy in %. One seed: mean ± 1.96 sd / sqrt(n) over {tasks} {all_runs[0].results['eval']['split']} "
            "tasks per mode (overall: all tasks pooled). Several seeds: the mean of the per-seed accuracies ± a "
            "Student-t interval over seeds (the per-seed figures are below). *tested*: the checkpoint evaluated and "
            "its iteration (per specialist for Multi-* methods).",
            "",
        ]
        per_seed = per_seed_accuracy_table(c, setting)
        if per_seed:
            lines += ["Per seed:", "", per_seed, ""]
        stem = f"results_{c.name}_{mode}_{shots}shot"
        path = accuracy_figure(c, setting, shots, figures_dir / f"{stem}_accuracy.png", title)
        lines += [f"![accuracy]({_rel(path, report)})", ""]
        contrasts = setting_contrasts(c, setting)
        if contrasts:
            lines += [
                "Paired differences on the identical test tasks, in accuracy points: across seeds (mean of the "
                "per-seed paired means ± t-interval over seeds; p: one-sample t-test over seeds) where both methods "
                "have several seeds, else the one seed's mean of per-task differences ± 1.96 sd / sqrt(n) (p: "
                "two-sided paired t-test). *stratified by mode*: the same interval with the tasks of each mode "
                "as their own stratum (across seeds the interval is over seeds, which has no such form: -).",
                "",
                paired_section(c, setting, contrasts),
                "",
            ]
            path = forest_figure(c, contrasts, shots, figures_dir / f"{stem}_forest.png", title)
            if path is not None:
                lines += [f"![paired differences]({_rel(path, report)})", ""]
            ablation = ablation_section(c, setting, _spread_for(c, shots))
            if ablation:
                lines += [ablation, ""]
        first_seed = next(iter(setting))
        curves = curves_figure(c, setting[first_seed], figures_dir / f"{stem}_seed{first_seed}_curves.png",
                               f"{title}, seed {first_seed}")
        if curves is not None:
            lines += [f"![training and validation curves, seed {first_seed}]({_rel(curves, report)})", ""]
        summary["settings"].append({
            "mode": mode, "shots": shots, "seeds": list(setting),
            "paired": [cmp.as_dict() for cmp in contrasts],
            "overall": {m: {str(seed): r.results["overall"] for seed, r in _runs_of(c, setting, m).items()}
                        for m in _methods(c, setting)},
        })
    if c.transference:
        lines += [transference_section(c, report, figures_dir), ""]
    if c.diagnostics:
        lines += [diagnostics_section(c), ""]
    if notes.is_file():
        lines += [notes.read_text().strip(), ""]
    lines += _budget_lines(c, budget)
    return "\n".join(lines), summary


def _spread_for(c: CampaignRecords, shots: int) -> float | None:
    """The seed spread (:func:`seed_spread`) of the campaign's settings with ``shots``."""
    contrasts = [cmp for (mode, s), setting in _settings(c).items() if s == shots
                 for cmp in setting_contrasts(c, setting)]
    return seed_spread(contrasts)


def _budget_lines(c: CampaignRecords, budget: dict) -> list[str]:
    seconds = [r.get("seconds") for r in c.records.values() if r.get("seconds")]
    machines = {_machine_text(r.get("machine", {})) for r in c.records.values() if r.get("machine")}
    lines = [
        "#### Budget, hardware and commands",
        "",
        f"- Budget per run: {budget.get('image_size')}x{budget.get('image_size')} images, "
        f"{budget.get('iterations')} iterations"
        + (f", meta-batch {budget['meta_batch_size']}"
           if budget.get("meta_batch_size") else ", the recipe's meta-batch")
        + f", {budget.get('eval_tasks_per_mode')} test tasks per mode"
        + (f", validation every {budget['val_every']} iterations on "
           f"{budget.get('val_tasks_per_mode')} val tasks per mode"
           if budget.get("val_every") else "")
        + f", tested checkpoint: {budget.get('eval_checkpoint', 'last')}.",
        f"- Hardware: {'; '.join(sorted(machines)) or 'unrecorded'}"
        + (f"; {sum(seconds) / 3600:.1f} h of training and testing recorded (the last session of each run)."
           if seconds else "."),
        f"- Regenerate or continue: `python scripts/reproduce.py campaign={c.name}` (add `data_root=<prepared data>`); "
        f"this report alone: `python scripts/reproduce.py campaign={c.name} report_only=true`.",
        "",
        "<details><summary>The command of every run</summary>",
        "",
    ]
    for run in c.runs:
        rec = c.records.get(run.path.name, {})
        if rec.get("command"):
            lines.append(f"- `{rec['run_id']}`: `{rec['command']}`")
    lines += ["", "</details>", ""]
    return lines




_INTRO = """# Results

The tables below are produced by this library's own training and evaluation code and
regenerated from the committed run records in `results/` by

```bash
python scripts/reproduce.py campaign=<name> report_only=true
```

Every number comes from a finished run whose records (`results.json`, per-task test
accuracies, metrics, resolved config, provenance: code commit and, for newer runs, the
data it saw) are in `results/<campaign>/<run>/`. Methods of one setting are tested on the
identical seeded tasks, so their paired differences (mean of per-task differences) have
far tighter confidence intervals than the methods' own accuracies; those intervals cover
the sampling of test tasks, not training. Where a method was trained with several seeds,
the headline figures are across seeds (a Student-t interval over seeds), which is what a
new training run would vary by. The paper's numbers are shown in their own column only,
labelled with the paper's setting; where our setting differs (datasets, image size,
budget), the two are not directly comparable.

A run is bit-for-bit reproducible on the machine that made it (same code, data and
library versions); on another machine, floating-point kernels differ and a rerun moves
by a few hundredths to tenths of a point. The data hashes in each record tell data
differences apart from such kernel differences.
"""


def write_report(results_dir: Path, report: Path, figures_dir: Path, log=logger.info) -> Path:
    """Write ``report`` (markdown) and its figures from the records in ``results_dir``.

    Raises:
        KmlError: there are no campaign records in ``results_dir``.
    """
    campaigns = load_campaigns(Path(results_dir))
    if not campaigns:
        raise KmlError(
            f"no campaign records in {results_dir} (no <campaign>/campaign.yaml); run a campaign first: "
            "python scripts/reproduce.py campaign=<name>"
        )
    report = Path(report)
    figures_dir = Path(figures_dir)
    sections, summaries = [], []
    for c in campaigns:
        text, summary = campaign_section(c, report, figures_dir)
        sections.append(text)
        summaries.append(summary)
    toc = [f"- [{c.spec.get('title') or c.name}](#{_anchor(c)})" for c in campaigns]
    claims = claims_section(campaigns)
    atomic_write_text(report, _INTRO + "\n" + claims + "\n\n" + "\n".join(toc) + "\n\n" + "\n".join(sections))
    atomic_write_text(report.with_suffix(".json"), json.dumps(summaries, indent=1) + "\n")
    log(f"report written to {report} (figures in {figures_dir})")
    return report


def _anchor(c: CampaignRecords) -> str:
    """The id of a campaign's section: an explicit HTML anchor before its heading, so links
    work wherever the report is rendered (GitHub and the documentation site slug headings
    differently)."""
    return "campaign-" + re.sub(r"[^a-z0-9_-]", "-", c.name.lower())
