"""The results report (``docs/results.md`` and its figures), built from the committed
records in ``results/`` alone: no checkpoint and no dataset is needed to rebuild it.

First, one table of the headline paired contrasts (KML − none, KML − FiLM, FiLM − none,
KML − Multi) of every campaign setting. Then, for every campaign and setting (mode
mixture, shots, seed): the table of methods per
mode and overall with 95% CIs and the paper's numbers in their own column; each
method's paired difference from the baseline (and the campaign's extra pairs) on the
identical test tasks, with a sentence saying which way it goes; a bar chart with the
paper's values as markers; the validation curves; and, where the campaign has one,
the transference histograms. Budget, hardware and the command of every number close
each section.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from kml.analysis.comparison import RunRecord, format_p, modes_of, read_run_record
from kml.analysis.paired import PairingError, compare_task_records
from kml.errors import KmlError
from kml.io import atomic_write_text
from kml.plotting import save_figure, subplots

__all__ = ["CampaignRecords", "load_campaigns", "write_report", "campaign_section"]


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
        c.runs.sort(key=lambda r: order.get(c.records.get(r.path.name, {}).get("method", r.method), 99))
        transference = folder / "transference.json"
        if transference.is_file():
            c.transference = json.loads(transference.read_text())
        diagnostics = folder / "modulation_diagnostics.json"
        if diagnostics.is_file():
            c.diagnostics = json.loads(diagnostics.read_text())
        campaigns.append(c)
    campaigns.sort(key=lambda c: (c.spec.get("order", 0), c.name))
    return campaigns


# ------------------------------------------------------------------ helpers
def _name(c: CampaignRecords, run: RunRecord) -> str:
    """The campaign's display name of a run's method (e.g. Multi-ProtoNet)."""
    return c.records.get(run.path.name, {}).get("method", run.method)


def _settings(c: CampaignRecords) -> dict[tuple, list[RunRecord]]:
    """Runs grouped by setting ``(mode, shots, seed)``."""
    groups: dict[tuple, list[RunRecord]] = {}
    for run in c.runs:
        rec = c.records.get(run.path.name, {})
        key = (run.results["mode"], run.results["eval"]["shots"], rec.get("seed", run.results["config"]["train"]["seed"]))
        groups.setdefault(key, []).append(run)
    return groups


def _rel(path: Path, report: Path) -> str:
    return os.path.relpath(path, report.parent).replace(os.sep, "/")


def code_marks(c: CampaignRecords, run: RunRecord) -> str:
    """`` ‡`` for a run trained from uncommitted code, `` †`` for one resumed on another
    commit (from its record, or its ``run_info.json`` for records that predate that)."""
    from kml.campaign.runner import run_code

    code = c.records.get(run.path.name, {}).get("code") or run_code(run.path)
    return (" ‡" if code.get("dirty") else "") + (" †" if code.get("commit_changed") else "")


CODE_MARKS_NOTE = (
    "‡: trained from a work tree with uncommitted changes (`run_info.json`: `git_dirty`), so its exact code is not "
    "in git. †: resumed on another commit than it started on (`run_info.json`: `resumes`)."
)


def _paper_value(c: CampaignRecords, method: str) -> float | None:
    values = (c.spec.get("paper") or {}).get("values") or {}
    return values.get(method)


# ------------------------------------------------------------------ tables
def accuracy_table(c: CampaignRecords, runs: list[RunRecord]) -> str:
    modes = modes_of(runs)
    paper = c.spec.get("paper") or {}
    paper_col = bool(paper.get("values"))
    header = "| method | " + " | ".join(modes) + " | **overall** | tested |" + (" paper |" if paper_col else "")
    rows = [header, "|" + "---|" * (len(modes) + 3 + paper_col)]
    for run in runs:
        cells = []
        for m in modes:
            v = run.results["per_mode"].get(m)
            cells.append(f"{v['accuracy']:.2f} ± {v['ci95']:.2f}" if v else "-")
        o = run.results["overall"]
        tested = run.results.get("checkpoint", "last")
        its = run.results.get("checkpoint_iterations") or run.results.get("iterations", {})
        tested += " (" + ", ".join(f"{k}: {v}" if k != "all" else str(v) for k, v in its.items()) + ")"
        row = f"| {_name(c, run)}{code_marks(c, run)} | " + " | ".join(cells) + f" | **{o['accuracy']:.2f} ± {o['ci95']:.2f}** | {tested} |"
        if paper_col:
            value = _paper_value(c, _name(c, run))
            row += f" {value:.2f} |" if value is not None else " - |"
        rows.append(row)
    if any(code_marks(c, run) for run in runs):
        rows += ["", CODE_MARKS_NOTE]
    return "\n".join(rows)


def _signed(value: float) -> str:
    return f"{round(value, 2) + 0.0:+.2f}"


def _pairs(c: CampaignRecords, runs: list[RunRecord]) -> list[tuple[RunRecord, RunRecord]]:
    by_name = {_name(c, r): r for r in runs}
    base = by_name.get(c.spec.get("baseline"))
    pairs = []
    if base is not None:
        pairs += [(r, base) for r in runs if r is not base]
    for a, b in c.spec.get("pairs") or []:
        if a in by_name and b in by_name and (by_name[a], by_name[b]) not in pairs:
            pairs.append((by_name[a], by_name[b]))
    return pairs


def paired_section(c: CampaignRecords, runs: list[RunRecord]) -> tuple[str, list[dict]]:
    """The paired-difference table and one sentence per comparison."""
    rows, sentences, entries = [], [], []
    modes: list[str] = []
    results = []
    for a, b in _pairs(c, runs):
        if a.tasks is None or b.tasks is None:
            results.append((a, b, None, "no per-task records"))
            continue
        try:
            cmp = compare_task_records(a.tasks, b.tasks)
        except PairingError as err:
            results.append((a, b, None, str(err)))
            continue
        for m in cmp["per_mode"]:
            if m not in modes:
                modes.append(m)
        results.append((a, b, cmp, None))
    header = "| comparison | " + " | ".join(modes) + " | **overall** | tasks | p | wins / losses / ties |"
    rows = [header, "|" + "---|" * (len(modes) + 5)]
    for a, b, cmp, error in results:
        label = f"{_name(c, a)} − {_name(c, b)}"
        if cmp is None:
            rows.append(f"| {label} | " + " | ".join("-" for _ in modes) + f" | {error} | - | - | - |")
            continue
        cells = [
            f"{_signed(cmp['per_mode'][m]['difference'])} ± {cmp['per_mode'][m]['ci95']:.2f}" if m in cmp["per_mode"] else "-"
            for m in modes
        ]
        o = cmp["overall"]
        rows.append(
            f"| {label} | " + " | ".join(cells)
            + f" | **{_signed(o['difference'])} ± {o['ci95']:.2f}** | {o['tasks']} | {format_p(o['p_value'])} | "
            f"{o['wins']} / {o['losses']} / {o['ties']} |"
        )
        significant = o["p_value"] < 0.05 and abs(o["difference"]) > o["ci95"]
        if not significant:
            verdict = "no significant difference overall"
        elif o["difference"] > 0:
            verdict = f"{_name(c, a)} is better overall"
        else:
            verdict = f"{_name(c, a)} is worse overall"
        better = [m for m in modes if m in cmp["per_mode"] and cmp["per_mode"][m]["difference"] - cmp["per_mode"][m]["ci95"] > 0]
        worse = [m for m in modes if m in cmp["per_mode"] and cmp["per_mode"][m]["difference"] + cmp["per_mode"][m]["ci95"] < 0]
        detail = []
        if better:
            detail.append(f"better on {', '.join(better)}")
        if worse:
            detail.append(f"worse on {', '.join(worse)}")
        sentences.append(
            f"- **{label}: {_signed(o['difference'])} ± {o['ci95']:.2f} points** (p {format_p(o['p_value'])}, "
            f"{o['tasks']} paired tasks): {verdict}" + (f" ({'; '.join(detail)} at 95%)" if detail else "") + "."
        )
        entries.append({"a": _name(c, a), "b": _name(c, b), **cmp})
    return "\n".join(rows) + "\n\n" + "\n".join(sentences), entries


# ------------------------------------------------------------------ figures
def accuracy_figure(c: CampaignRecords, runs: list[RunRecord], path: Path, title: str) -> Path:
    modes = modes_of(runs)
    groups = modes + ["overall"]
    width = 0.8 / max(1, len(runs))
    fig, ax = subplots(figsize=(max(7.0, 1.3 * len(groups) * max(1, len(runs)) / 2 + 3), 4.2))
    x = np.arange(len(groups))
    for k, run in enumerate(runs):
        entries = [run.results["per_mode"].get(m) for m in modes] + [run.results["overall"]]
        values = [e["accuracy"] if e else np.nan for e in entries]
        errors = [e["ci95"] if e else 0 for e in entries]
        offset = (k - (len(runs) - 1) / 2) * width
        ax.bar(x + offset, values, width, yerr=errors, capsize=2, label=_name(c, run), color=f"C{k}")
        paper = _paper_value(c, _name(c, run))
        if paper is not None:
            ax.plot([x[-1] + offset], [paper], marker="D", color="black", markersize=5, linestyle="none",
                    label="paper (its setting)" if k == 0 or not any(
                        _paper_value(c, _name(c, r)) is not None for r in runs[:k]) else None)
    ways = runs[0].results["eval"]["ways"]
    ax.axhline(100.0 / ways, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(x, groups, rotation=15)
    ax.set(ylabel="test accuracy (%) ± 95% CI", title=title, ylim=(0, 100))
    ax.legend(fontsize=7, ncol=2)
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path, dpi=110)
    return path


def paired_figure(entries: list[dict], path: Path, title: str) -> Path:
    """The paired differences with their 95% CIs, per mode and overall, one bar per comparison."""
    modes: list[str] = []
    for e in entries:
        for m in e["per_mode"]:
            if m not in modes:
                modes.append(m)
    groups = modes + ["overall"]
    width = 0.8 / max(1, len(entries))
    fig, ax = subplots(figsize=(max(7.0, 0.5 * len(groups) * len(entries) + 3), 4.2))
    x = np.arange(len(groups))
    for k, e in enumerate(entries):
        stats = [e["per_mode"].get(m) for m in modes] + [e["overall"]]
        offset = (k - (len(entries) - 1) / 2) * width
        ax.bar(x + offset, [s["difference"] if s else np.nan for s in stats], width,
               yerr=[s["ci95"] if s else 0 for s in stats], capsize=2, color=f"C{k}", label=f"{e['a']} − {e['b']}")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xticks(x, groups, rotation=15)
    ax.set(ylabel="paired difference (accuracy points) ± 95% CI", title=f"paired differences: {title}")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path, dpi=110)


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
        for j, (part, records) in enumerate(_metrics(run).items()):
            label = _name(c, run) + (f" ({part})" if part else "")
            style = ("-", "--", ":", "-.")[j % 4]
            train = [r for r in records if "loss" in r]
            val = [r for r in records if "val" in r]
            if train:
                ax_train.plot([r["iteration"] for r in train], [r["accuracy"] for r in train], color=f"C{k}",
                              linestyle=style, linewidth=1, label=label)
            if val:
                any_val = True
                ax_val.plot([r["iteration"] for r in val], [r["val"]["accuracy"] for r in val], color=f"C{k}",
                            linestyle=style, marker="o", markersize=2.5, label=label)
    if not any_val and not any(ax_train.lines):
        return None
    ax_train.set(xlabel="iteration", ylabel="query accuracy (%)", title="meta-training accuracy (windows of log_every)")
    ax_val.set(xlabel="iteration", ylabel="val accuracy (%)", title="validation accuracy (fixed val tasks)")
    for ax in (ax_train, ax_val):
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
    fig.suptitle(title, y=1.02)
    save_figure(fig, path, dpi=110)
    return path


def transference_section(c: CampaignRecords, report: Path, figures_dir: Path) -> str:
    from kml.analysis.transference_plots import plot_lr_histograms
    from kml.analysis.transference import transfer_shares

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
    return f"CPU {machine.get('cpu')} ({machine.get('cpu_count')} cores, torch threads: {machine.get('torch_threads')}, torch {machine.get('torch')})"


# ------------------------------------------------------------------ sections
def campaign_section(c: CampaignRecords, report: Path, figures_dir: Path) -> tuple[str, dict]:
    """The markdown of one campaign and a machine-readable summary of its comparisons."""
    spec = c.spec
    budget = spec.get("budget", {})
    lines = [f"## {spec.get('title') or c.name}", ""]
    if spec.get("description"):
        lines += [spec["description"].strip(), ""]
    planned = len(spec.get("methods", [])) * len(spec.get("modes", [])) * len(spec.get("shots", [1])) * len(
        spec.get("seeds", [0])
    )
    if len(c.runs) < planned:
        lines += [f"**Incomplete:** {len(c.runs)} of {planned} runs are recorded so far.", ""]
    notes = c.folder / "notes.md"
    summary: dict = {"campaign": c.name, "settings": []}
    for (mode, shots, seed), runs in _settings(c).items():
        title = f"{mode}, {runs[0].results['eval']['ways']}-way {shots}-shot, seed {seed}"
        lines += [f"### {title}", ""]
        paper = spec.get("paper") or {}
        if paper.get("values"):
            lines += [f"Paper column: {paper.get('setting', '')}. {paper.get('note', '')}".strip(), ""]
        lines += [accuracy_table(c, runs), ""]
        lines += [
            f"Accuracy in %, mean ± 1.96 sd / sqrt(n) over {runs[0].results['eval']['tasks_per_mode']} "
            f"{runs[0].results['eval']['split']} tasks per mode (overall: all tasks pooled). *tested*: the "
            "checkpoint evaluated and its iteration (per specialist for Multi-* methods).",
            "",
        ]
        stem = f"results_{c.name}_{mode}_{shots}shot_seed{seed}"
        path = accuracy_figure(c, runs, figures_dir / f"{stem}_accuracy.png", title)
        lines += [f"![accuracy]({_rel(path, report)})", ""]
        table, entries = paired_section(c, runs)
        if entries:
            lines += [
                "Paired differences on the identical test tasks (accuracy points, mean of per-task differences ± "
                "1.96 sd / sqrt(n); p: two-sided paired t-test):",
                "",
                table,
                "",
            ]
            path = paired_figure(entries, figures_dir / f"{stem}_paired.png", title)
            lines += [f"![paired differences]({_rel(path, report)})", ""]
        curves = curves_figure(c, runs, figures_dir / f"{stem}_curves.png", title)
        if curves is not None:
            lines += [f"![training and validation curves]({_rel(curves, report)})", ""]
        summary["settings"].append({"mode": mode, "shots": shots, "seed": seed, "paired": entries,
                                    "overall": {_name(c, r): r.results["overall"] for r in runs}})
    if c.transference:
        lines += [transference_section(c, report, figures_dir), ""]
    if c.diagnostics:
        lines += [diagnostics_section(c), ""]
    if notes.is_file():
        lines += [notes.read_text().strip(), ""]
    lines += _budget_lines(c, budget)
    return "\n".join(lines), summary


def _budget_lines(c: CampaignRecords, budget: dict) -> list[str]:
    seconds = [r.get("seconds") for r in c.records.values() if r.get("seconds")]
    machines = {_machine_text(r.get("machine", {})) for r in c.records.values() if r.get("machine")}
    lines = [
        "#### Budget, hardware and commands",
        "",
        f"- Budget per run: {budget.get('image_size')}x{budget.get('image_size')} images, "
        f"{budget.get('iterations')} iterations"
        + (f", meta-batch {budget['meta_batch_size']}" if budget.get("meta_batch_size") else ", the recipe's meta-batch")
        + f", {budget.get('eval_tasks_per_mode')} test tasks per mode"
        + (f", validation every {budget['val_every']} iterations on {budget.get('val_tasks_per_mode')} val tasks per mode"
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


# the headline contrasts: (label, method kind a, method kind b)
GLANCE = (("KML − none", "kml", "none"), ("KML − FiLM", "kml", "film"), ("FiLM − none", "film", "none"),
          ("KML − Multi", "kml", "multi"))


def method_kinds(c: CampaignRecords) -> dict[str, str]:
    """The campaign's main method of each kind (``none``, ``film``, ``kml``, ``multi``): the
    first listed method with that modulation (or ``multi: true``). Variants listed after it
    (e.g. another modulation learning rate) are not the headline method."""
    kinds: dict[str, str] = {}
    for method in c.spec.get("methods", []):
        kind = "multi" if method.get("multi") else method.get("modulation", "none")
        kinds.setdefault(kind, method["name"])
    return kinds


def glance_section(campaigns: list[CampaignRecords]) -> str:
    """One row per campaign setting: the paired overall differences KML − none, KML − FiLM,
    FiLM − none and KML − Multi-* on the identical test tasks, with the paper's difference
    of the same two methods (from its column, where the campaign lists it) in brackets."""
    rows = [
        "| setting | budget | " + " | ".join(label for label, _, _ in GLANCE) + " |",
        "|---|---|" + "---|" * len(GLANCE),
    ]
    for c in campaigns:
        kinds = method_kinds(c)
        budget = c.spec.get("budget", {})
        title = c.spec.get("title") or c.name
        for (mode, shots, seed), runs in _settings(c).items():
            by_name = {_name(c, r): r for r in runs}
            cells = []
            for label, kind_a, kind_b in GLANCE:
                a, b = by_name.get(kinds.get(kind_a)), by_name.get(kinds.get(kind_b))
                if a is None or b is None or a.tasks is None or b.tasks is None:
                    cells.append("-")
                    continue
                try:
                    o = compare_task_records(a.tasks, b.tasks)["overall"]
                except PairingError:  # not tested on the same tasks: the section's table says why
                    cells.append("-")
                    continue
                pa, pb = _paper_value(c, _name(c, a)), _paper_value(c, _name(c, b))
                paper = pa - pb if pa is not None and pb is not None else None
                cells.append(f"{_signed(o['difference'])} ± {o['ci95']:.2f}" + (f" ({_signed(paper)})" if paper is not None else ""))
            rows.append(
                f"| [{mode}, {shots}-shot, seed {seed}]({'#' + _anchor(title)}) ({c.name}) | "
                f"{budget.get('image_size')}px, {budget.get('iterations')} it. | " + " | ".join(cells) + " |"
            )
    return "\n".join([
        "## At a glance",
        "",
        "Paired overall differences in accuracy points (mean of per-task differences ± 1.96 sd / sqrt(n) "
        "on the identical test tasks) between each campaign's main methods: KML (MProtoNet+KML or "
        "MMAML+KML), FiLM (MProtoNet or MMAML), none (ProtoNet or MAML) and Multi (one specialist per "
        "mode). In brackets: the difference of the same two methods in the paper's column, in the "
        "paper's own setting, which differs from ours as each section says.",
        "",
        *rows,
    ])


_INTRO = """# Results

The tables below are produced by this library's own training and evaluation code and
regenerated from the committed run records in `results/` by

```bash
python scripts/reproduce.py campaign=<name> report_only=true
```

Every number comes from a finished run whose records (`results.json`, per-task test
accuracies, metrics, resolved config, provenance) are in `results/<campaign>/<run>/`.
Methods of one setting are tested on the identical seeded tasks, so their paired
differences (mean of per-task differences) have far tighter confidence intervals than
the methods' own accuracies. The paper's numbers are shown in their own column only,
labelled with the paper's setting; where our setting differs (datasets, image size,
budget), the two are not directly comparable.
"""


def write_report(results_dir: Path, report: Path, figures_dir: Path, log=print) -> Path:
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
    toc = [f"- [{c.spec.get('title') or c.name}](#{_anchor(c.spec.get('title') or c.name)})" for c in campaigns]
    glance = glance_section(campaigns)
    atomic_write_text(report, _INTRO + "\n" + "\n".join(toc) + "\n\n" + glance + "\n\n" + "\n".join(sections))
    atomic_write_text(report.with_suffix(".json"), json.dumps(summaries, indent=1) + "\n")
    log(f"report written to {report} (figures in {figures_dir})")
    return report


def _anchor(title: str) -> str:
    import re

    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")
