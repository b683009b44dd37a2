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
from pathlib import Path

from kml.analysis.seeds import Contrast
from kml.campaign.advantage import advantage_figure, advantage_section, setting_advantages
from kml.campaign.claims import claims_section
from kml.campaign.contrasts import contrast, forest_contrasts, setting_contrasts
from kml.campaign.figures import accuracy_figure, curves_figure, forest_figure
from kml.campaign.findings import fill_findings
from kml.campaign.records import (
    CampaignRecords,
    Setting,
    anchor,
    load_campaigns,
    methods_in,
    paper_setting,
    paper_value,
    relative_link,
    runs_of,
    seeds_text,
    settings_of,
    signed,
)
from kml.campaign.sections import (
    ablation_section,
    accuracy_table,
    budget_lines,
    data_section,
    diagnostics_section,
    paired_section,
    per_seed_accuracy_table,
    transference_section,
)
from kml.errors import KmlError
from kml.io import atomic_write_text

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


# ------------------------------------------------------------------ helpers


# ------------------------------------------------------------------ contrasts


# ------------------------------------------------------------------ accuracy tables


# ------------------------------------------------------------------ data


# ------------------------------------------------------------------ figures


# ------------------------------------------------------------------ claims


# ------------------------------------------------------------------ sections
def campaign_section(c: CampaignRecords, report: Path, figures_dir: Path) -> tuple[str, dict]:
    """The markdown of one campaign and a machine-readable summary of its comparisons."""
    from kml.campaign.plan import planned_settings

    spec = c.spec
    budget = spec.get("budget", {})
    lines = [f'<a id="{anchor(c)}"></a>', "", f"## {spec.get('title') or c.name}", ""]
    if spec.get("description"):
        lines += [spec["description"].strip(), ""]
    planned = len(planned_settings(spec))
    if len(c.runs) < planned:
        lines += [f"**Incomplete:** {len(c.runs)} of {planned} runs are recorded so far.", ""]
    data = data_section(c)
    if data:
        lines += [data]
    summary: dict = {"campaign": c.name, "settings": []}
    for (mode, shots), setting in settings_of(c).items():
        text, entry = setting_section(c, mode, shots, setting, report, figures_dir)
        lines += [text]
        summary["settings"].append(entry)
    if c.transference:
        lines += [transference_section(c, report, figures_dir), ""]
    if c.diagnostics:
        lines += [diagnostics_section(c), ""]
    notes = c.folder / "notes.md"
    if notes.is_file():
        lines += [findings(c, notes), ""]
    lines += budget_lines(c, budget)
    return "\n".join(lines), summary


def setting_section(c: CampaignRecords, mode: str, shots: int, setting: Setting, report: Path,
                    figures_dir: Path) -> tuple[str, dict]:
    """The markdown of one setting (mode and shots) of a campaign, and its summary for
    ``results.json``: accuracy, paired contrasts, ablation, the advantage over training and
    the curves."""
    all_runs = [r for runs in setting.values() for r in runs]
    ways = all_runs[0].results["eval"]["ways"]
    title = f"{mode}, {ways}-way {shots}-shot"
    stem = f"results_{c.name}_{mode}_{shots}shot"
    lines = [f"### {title}", "", f"Training seeds: {seeds_text(setting)}.", ""]
    paper = c.spec.get("paper") or {}
    if any(paper_value(c, m, shots) is not None for m in methods_in(c, setting)):
        lines += [f"Paper column: {paper_setting(paper, shots)}. {paper.get('note', '')}".strip(), ""]
    lines += [accuracy_table(c, setting, shots), "", _ACCURACY_NOTE.format(
        tasks=all_runs[0].results["eval"]["tasks_per_mode"], split=all_runs[0].results["eval"]["split"]), ""]
    per_seed = per_seed_accuracy_table(c, setting)
    if per_seed:
        lines += ["Per seed:", "", per_seed, ""]
    path = accuracy_figure(c, setting, shots, figures_dir / f"{stem}_accuracy.png", title)
    lines += [f"![accuracy]({relative_link(path, report)})", ""]
    contrasts = setting_contrasts(c, setting)
    if contrasts:
        lines += [_PAIRED_NOTE, "", paired_section(c, setting, contrasts), ""]
        path = forest_figure(c, forest_contrasts(c, setting, contrasts), shots, figures_dir / f"{stem}_forest.png",
                             title)
        if path is not None:
            lines += [f"![paired differences]({relative_link(path, report)})", ""]
        ablation = ablation_section(c, setting)
        if ablation:
            lines += [ablation, ""]
    advantages = setting_advantages(c, setting)
    if advantages:
        path = advantage_figure(advantages, figures_dir / f"{stem}_advantage.png", title)
        lines += [advantage_section(advantages, path, relative_link(path, report) if path else None), ""]
    first_seed = next(iter(setting))
    curves = curves_figure(c, setting[first_seed], figures_dir / f"{stem}_seed{first_seed}_curves.png",
                           f"{title}, seed {first_seed}")
    if curves is not None:
        lines += [f"![training and validation curves, seed {first_seed}]({relative_link(curves, report)})", ""]
    entry = {
        "mode": mode, "shots": shots, "seeds": list(setting),
        "paired": [cmp.as_dict() for cmp in contrasts],
        "overall": {m: {str(seed): r.results["overall"] for seed, r in runs_of(c, setting, m).items()}
                    for m in methods_in(c, setting)},
        "advantage_over_training": [adv.as_dict() for adv in advantages],
    }
    return "\n".join(lines), entry


def findings(c: CampaignRecords, notes: Path) -> str:
    """A campaign's findings text (``notes.md``) with its placeholders filled in from the
    records (:func:`kml.campaign.findings.fill_findings`): verdict words and contrast figures
    come from the same computation as the tables, never typed."""
    settings = settings_of(c)

    def lookup(kind: str, a: str, b: str, shots: int) -> str | None:
        setting = next((s for (mode, k), s in settings.items() if k == shots), None)
        cmp = contrast(c, setting, a, b) if setting is not None else None
        if cmp is None or not cmp.per_seed:
            return None
        if kind == "verdict":
            return cmp.verdict().word
        mean, ci, over = cmp.headline()
        return f"{signed(mean)} ± {ci:.2f}" + (f" ({len(cmp.seeds)} seeds)" if over == "seeds" else
                                                 f" (seed {cmp.seeds[0]})")

    return fill_findings(notes.read_text().strip(), lookup, f"{c.folder.name}/notes.md")


_ACCURACY_NOTE = (
    "Accuracy in %. One seed: mean ± 1.96 sd / sqrt(n) over {tasks} {split} tasks per mode (overall: all tasks "
    "pooled). Several seeds: the mean of the per-seed accuracies ± a Student-t interval over seeds (the per-seed "
    "figures are below). *tested*: the checkpoint evaluated and its iteration (per specialist for Multi-* methods)."
)
_PAIRED_NOTE = (
    "Paired differences on the identical test tasks, in accuracy points: across seeds (mean of the per-seed paired "
    "means ± t-interval over seeds; p: one-sample t-test over seeds) where both methods have several seeds, else the "
    "one seed's mean of per-task differences ± 1.96 sd / sqrt(n) (p: two-sided paired t-test). *stratified by "
    "mode*: the same interval with the tasks of each mode as their own stratum (across seeds the interval is over "
    "seeds, which has no such form: -)."
)


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
    toc = [f"- [{c.spec.get('title') or c.name}](#{anchor(c)})" for c in campaigns]
    claims = claims_section(campaigns)
    atomic_write_text(report, _INTRO + "\n" + claims + "\n\n" + "\n".join(toc) + "\n\n" + "\n".join(sections))
    atomic_write_text(report.with_suffix(".json"), json.dumps(summaries, indent=1) + "\n")
    log(f"report written to {report} (figures in {figures_dir})")
    return report


