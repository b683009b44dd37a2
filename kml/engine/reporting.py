"""Plots of one run: learning curves (with validation), per-mode accuracy and the
task-embedding scatter."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kml.io import read_jsonl
from kml.plotting import save_figure, subplots

__all__ = [
    "read_metrics",
    "plot_learning_curve",
    "plot_per_mode_accuracy",
    "plot_task_embeddings",
    "write_run_plots",
]


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of ``metrics.jsonl`` (a torn last line is skipped)."""
    return read_jsonl(Path(run_dir) / "metrics.jsonl")


def plot_learning_curve(records_by_name: dict[str, list[dict]], path: Path, title: str) -> None:
    """Meta-training loss and query accuracy against iterations (one line per learner),
    and, when the run validated (``eval.val_every``), the val accuracy overall and per mode."""
    train = {name: [r for r in records if "loss" in r] for name, records in records_by_name.items()}
    val = {name: [r for r in records if "val" in r] for name, records in records_by_name.items()}
    with_val = any(val.values())
    fig, axes = subplots(1, 3 if with_val else 2, figsize=(16.5 if with_val else 11, 4))
    ax_loss, ax_acc = axes[0], axes[1]
    for name, records in train.items():
        if not records:
            continue
        it = [r["iteration"] for r in records]
        ax_loss.plot(it, [r["loss"] for r in records], label=name)
        ax_acc.plot(it, [r["accuracy"] for r in records], label=name)
    ax_loss.set(xlabel="iteration", ylabel="query loss", title="meta-training loss")
    ax_acc.set(xlabel="iteration", ylabel="query accuracy (%)", title="meta-training accuracy")
    legends = [ax_loss, ax_acc] if len(records_by_name) > 1 else []
    if with_val:
        ax_val = axes[2]
        several = len(records_by_name) > 1
        for i, (name, records) in enumerate(val.items()):
            if not records:
                continue
            it = [r["iteration"] for r in records]
            ax_val.plot(it, [r["val"]["accuracy"] for r in records], color=f"C{i}", linewidth=2,
                        marker="o", markersize=3, label=f"{name} (overall)" if several else "overall")
            modes = list(records[-1]["val"]["per_mode"])
            if len(modes) > 1:
                for j, mode in enumerate(modes):
                    ax_val.plot(it, [r["val"]["per_mode"].get(mode, {}).get("accuracy") for r in records],
                                color=f"C{i if several else j + 1}", linewidth=1, alpha=0.7,
                                linestyle=("--", ":", "-.")[j % 3] if several else "-",
                                label=f"{name}: {mode}" if several else mode)
        ax_val.set(xlabel="iteration", ylabel="val accuracy (%)", title="validation accuracy (fixed val tasks)")
        legends.append(ax_val)
    for ax in axes:
        ax.grid(alpha=0.3)
    for ax in legends:
        ax.legend(fontsize=7)
    fig.suptitle(title, y=1.02)
    save_figure(fig, path)


def plot_per_mode_accuracy(results: dict, path: Path, chance: float) -> None:
    """Bar chart of test accuracy per mode with 95% CIs."""
    modes = list(results["per_mode"]) + ["overall"]
    entries = [results["per_mode"][m] for m in modes[:-1]] + [results["overall"]]
    fig, ax = subplots(figsize=(1.4 * len(modes) + 2, 4))
    x = np.arange(len(modes))
    ax.bar(x, [e["accuracy"] for e in entries], yerr=[e["ci95"] for e in entries], capsize=4,
           color=["C0"] * (len(modes) - 1) + ["C3"])
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"chance ({chance:.0f}%)")
    for xi, e in zip(x, entries):
        ax.text(xi, e["accuracy"] + e["ci95"] + 1, f"{e['accuracy']:.1f}", ha="center", fontsize=8)
    ax.set_xticks(x, modes, rotation=20)
    ax.set(ylabel="test accuracy (%)", ylim=(0, 105), title=f"{results['method']} on {results['mode']}")
    ax.legend(fontsize=8)
    save_figure(fig, path)


def plot_task_embeddings(embeddings: dict[str, np.ndarray], path: Path, title: str) -> None:
    """2-d PCA of task embeddings, coloured by mode."""
    stacked = np.concatenate(list(embeddings.values()))
    centered = stacked - stacked.mean(0, keepdims=True)
    # principal axes from the SVD of the centred embeddings
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    projected = centered @ vt[:2].T if vt.shape[0] >= 2 else np.c_[centered[:, :1], np.zeros(len(centered))]
    fig, ax = subplots(figsize=(5.5, 5))
    start = 0
    for i, (mode, emb) in enumerate(embeddings.items()):
        part = projected[start : start + len(emb)]
        ax.scatter(part[:, 0], part[:, 1], s=6, alpha=0.6, color=f"C{i}", label=mode)
        start += len(emb)
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.legend(fontsize=8, markerscale=2)
    save_figure(fig, path)


def write_run_plots(run_dir: Path, results: dict, evaluations: dict) -> None:
    """``learning_curve.png``, ``per_mode_accuracy.png`` and (modulated) ``task_embeddings.png``."""
    run_dir = Path(run_dir)
    specialists = run_dir / "specialists"
    if specialists.is_dir():
        curves = {p.name: read_metrics(p) for p in sorted(specialists.iterdir()) if p.is_dir()}
    else:
        curves = {results["method"]: read_metrics(run_dir)}
    plot_learning_curve(curves, run_dir / "learning_curve.png", f"{results['method']} on {results['mode']}")
    ways = results["eval"]["ways"]
    plot_per_mode_accuracy(results, run_dir / "per_mode_accuracy.png", chance=100.0 / ways)
    embeddings = {m: ev.embeddings for m, ev in evaluations.items() if ev.embeddings is not None}
    if embeddings and not specialists.is_dir():
        plot_task_embeddings(embeddings, run_dir / "task_embeddings.png", f"task embeddings ({results['method']})")
