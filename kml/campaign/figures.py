"""The figures of the results report: accuracy per method and mode, the forest plot of
the paired contrasts, and the training and validation curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kml.analysis.comparison import RunRecord, modes_of
from kml.analysis.seeds import Contrast
from kml.campaign.records import CampaignRecords, Setting, method_of, methods_in, paper_difference, paper_value
from kml.campaign.sections import method_accuracy
from kml.plotting import save_figure, subplots


def series_color(k: int, n: int):
    """The colour of series ``k`` of ``n``: the default cycle, or ``tab20`` for many series."""
    if n <= 10:
        return f"C{k}"
    from matplotlib import colormaps

    return colormaps["tab20"](k % 20)


def accuracy_figure(c: CampaignRecords, setting: Setting, shots: int, path: Path, title: str) -> Path:
    """Accuracy of every method, one panel per mode and one overall: one row per method with
    its mean over seeds and its interval (the table's), the paper's value as a diamond in the
    overall panel, chance as a dashed line. 800 pixels wide, whatever the number of methods."""
    all_runs = [r for runs in setting.values() for r in runs]
    panels = [*modes_of(all_runs), None]
    methods = methods_in(c, setting)
    columns = min(3, len(panels))
    rows_of_panels = -(-len(panels) // columns)
    height = 0.22 * len(methods) + 0.9
    fig, axes = subplots(rows_of_panels, columns, figsize=(8.0, height * rows_of_panels), squeeze=False,
                         sharey=True)
    y = np.arange(len(methods))[::-1]
    chance = 100.0 / all_runs[0].results["eval"]["ways"]
    for index, mode in enumerate(panels):
        ax = axes[index // columns][index % columns]
        for row, (k, method) in zip(y, enumerate(methods)):
            value = method_accuracy(c, setting, method, mode)
            if value is not None:
                ax.errorbar(value[0], row, xerr=value[1], fmt="o", markersize=3.5, capsize=2, elinewidth=1.2,
                            color=series_color(k, len(methods)))
            paper = paper_value(c, method, shots) if mode is None else None
            if paper is not None:
                ax.plot(paper, row, marker="D", color="black", markersize=4, markerfacecolor="none",
                        linestyle="none")
        ax.axvline(chance, color="grey", linestyle="--", linewidth=0.8)
        ax.set_title("overall" if mode is None else mode, fontsize=8)
        ax.tick_params(labelsize=6)
        ax.grid(axis="x", alpha=0.3)
    for index in range(len(panels), rows_of_panels * columns):
        axes[index // columns][index % columns].axis("off")
    for r in range(rows_of_panels):
        axes[r][0].set_yticks(y, methods, fontsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("test accuracy (%) ± 95% CI", fontsize=7)
    if any(paper_value(c, m, shots) is not None for m in methods):
        title += " (◇: the paper, in its own setting)"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


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
            paper = paper_difference(c, cmp.a, cmp.b, shots) if mode is None else None
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
    if any(paper_difference(c, cmp.a, cmp.b, shots) is not None for cmp in contrasts):
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


#: the most series one panel of the curves figure shows
SERIES_PER_PANEL = 6


def _series(c: CampaignRecords, runs: list[RunRecord]) -> list[tuple[str, list[dict]]]:
    """``(label, metric records)`` of every run, one per specialist for Multi-* runs."""
    return [(method_of(c, run) + (f" ({part})" if part else ""), records)
            for run in runs for part, records in _metrics(run).items()]


def curves_figure(c: CampaignRecords, runs: list[RunRecord], path: Path, title: str) -> Path | None:
    """Meta-training accuracy (left) and validation accuracy (right) against iterations, in
    rows of at most :data:`SERIES_PER_PANEL` series (runs, or specialists of Multi-* runs),
    in the campaign's method order."""
    series = [(label, records) for label, records in _series(c, runs) if records]
    if not series:
        return None
    chunks = [series[i:i + SERIES_PER_PANEL] for i in range(0, len(series), SERIES_PER_PANEL)]
    fig, axes = subplots(len(chunks), 2, figsize=(12, 3.6 * len(chunks)), squeeze=False)
    for (ax_train, ax_val), chunk in zip(axes, chunks):
        for k, (label, records) in enumerate(chunk):
            train = [r for r in records if "loss" in r]
            val = [r for r in records if "val" in r]
            if train:
                ax_train.plot([r["iteration"] for r in train], [r["accuracy"] for r in train], color=f"C{k}",
                              linewidth=1, label=label)
            if val:
                ax_val.plot([r["iteration"] for r in val], [r["val"]["accuracy"] for r in val], color=f"C{k}",
                            marker="o", markersize=2.5, label=label)
        ax_train.set(xlabel="iteration", ylabel="query accuracy (%)",
                     title="meta-training accuracy (windows of log_every)")
        ax_val.set(xlabel="iteration", ylabel="val accuracy (%)", title="validation accuracy (fixed val tasks)")
        for ax in (ax_train, ax_val):
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7)
    fig.suptitle(title, y=1.0)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)
    return path
