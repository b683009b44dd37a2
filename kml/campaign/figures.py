"""The figures of the results report: accuracy per method and mode, the forest plot of
the paired contrasts, and the training and validation curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kml.analysis.comparison import RunRecord, modes_of
from kml.campaign.contrasts import Contrast
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
    """Accuracy per mode and overall, one bar per method (mean over its seeds), with the
    paper's values as markers."""
    all_runs = [r for runs in setting.values() for r in runs]
    modes = modes_of(all_runs)
    groups = modes + ["overall"]
    methods = methods_in(c, setting)
    width = 0.8 / max(1, len(methods))
    fig, ax = subplots(figsize=(max(7.0, 0.35 * len(groups) * len(methods) + 3), 4.2))
    x = np.arange(len(groups))
    labelled = False
    for k, method in enumerate(methods):
        stats = [method_accuracy(c, setting, method, m) for m in modes] + [method_accuracy(c, setting, method, None)]
        offset = (k - (len(methods) - 1) / 2) * width
        ax.bar(x + offset, [s[0] if s else np.nan for s in stats], width, yerr=[s[1] if s else 0 for s in stats],
               capsize=2, label=method, color=series_color(k, len(methods)))
        paper = paper_value(c, method, shots)
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


def curves_figure(c: CampaignRecords, runs: list[RunRecord], path: Path, title: str) -> Path | None:
    """Validation accuracy (overall; specialists per mode) and training accuracy against iterations."""
    fig, (ax_train, ax_val) = subplots(1, 2, figsize=(12, 4))
    any_val = False
    for k, run in enumerate(runs):
        color = series_color(k, len(runs))
        for j, (part, records) in enumerate(_metrics(run).items()):
            label = method_of(c, run) + (f" ({part})" if part else "")
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
