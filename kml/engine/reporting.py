"""Plots and tables of runs: learning curves, per-mode accuracy, task-embedding
scatter, and the paper-style comparison table of several runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kml.errors import KmlError

__all__ = [
    "read_metrics",
    "plot_learning_curve",
    "plot_per_mode_accuracy",
    "plot_task_embeddings",
    "write_run_plots",
    "collect_results",
    "comparison_table",
]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from kml.io import atomic_write

    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"))


def read_metrics(run_dir: str | Path) -> list[dict]:
    """The records of ``metrics.jsonl`` (a torn last line is skipped)."""
    path = Path(run_dir) / "metrics.jsonl"
    records = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def plot_learning_curve(records_by_name: dict[str, list[dict]], path: Path, title: str) -> None:
    """Meta-training loss and query accuracy against iterations (one line per learner)."""
    plt = _pyplot()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for name, records in records_by_name.items():
        if not records:
            continue
        it = [r["iteration"] for r in records]
        ax_loss.plot(it, [r["loss"] for r in records], label=name)
        ax_acc.plot(it, [r["accuracy"] for r in records], label=name)
    ax_loss.set(xlabel="iteration", ylabel="query loss", title="meta-training loss")
    ax_acc.set(xlabel="iteration", ylabel="query accuracy (%)", title="meta-training accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        if len(records_by_name) > 1:
            ax.legend(fontsize=8)
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)


def plot_per_mode_accuracy(results: dict, path: Path, chance: float) -> None:
    """Bar chart of test accuracy per mode with 95% CIs."""
    plt = _pyplot()
    modes = list(results["per_mode"]) + ["overall"]
    entries = [results["per_mode"][m] for m in modes[:-1]] + [results["overall"]]
    fig, ax = plt.subplots(figsize=(1.4 * len(modes) + 2, 4))
    x = np.arange(len(modes))
    ax.bar(x, [e["accuracy"] for e in entries], yerr=[e["ci95"] for e in entries], capsize=4,
           color=["C0"] * (len(modes) - 1) + ["C3"])
    ax.axhline(chance, color="grey", linestyle="--", linewidth=1, label=f"chance ({chance:.0f}%)")
    for xi, e in zip(x, entries):
        ax.text(xi, e["accuracy"] + e["ci95"] + 1, f"{e['accuracy']:.1f}", ha="center", fontsize=8)
    ax.set_xticks(x, modes, rotation=20)
    ax.set(ylabel="test accuracy (%)", ylim=(0, 105), title=f"{results['method']} on {results['mode']}")
    ax.legend(fontsize=8)
    _save(fig, path)
    plt.close(fig)


def plot_task_embeddings(embeddings: dict[str, np.ndarray], path: Path, title: str) -> None:
    """2-d PCA of task embeddings, coloured by mode."""
    plt = _pyplot()
    stacked = np.concatenate(list(embeddings.values()))
    centered = stacked - stacked.mean(0, keepdims=True)
    # principal axes from the SVD of the centred embeddings
    _, _, vt = np.linalg.svd(centered, full_matrices=False)
    projected = centered @ vt[:2].T if vt.shape[0] >= 2 else np.c_[centered[:, :1], np.zeros(len(centered))]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    start = 0
    for i, (mode, emb) in enumerate(embeddings.items()):
        part = projected[start : start + len(emb)]
        ax.scatter(part[:, 0], part[:, 1], s=6, alpha=0.6, color=f"C{i}", label=mode)
        start += len(emb)
    ax.set(xlabel="PC 1", ylabel="PC 2", title=title)
    ax.legend(fontsize=8, markerscale=2)
    _save(fig, path)
    plt.close(fig)


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


def collect_results(patterns: list[str]) -> list[tuple[Path, dict]]:
    """``(run_dir, results)`` of every run directory matched by ``patterns`` (paths or globs).

    Raises:
        KmlError: a pattern matches nothing, or a match has no ``results.json``.
    """
    from kml.engine.rundir import find_run_dirs

    found: list[tuple[Path, dict]] = []
    for path in find_run_dirs(patterns, "results.json", "run scripts/eval.py run_dir={path} first"):
        results_file = path / "results.json"
        try:
            found.append((path, json.loads(results_file.read_text())))
        except json.JSONDecodeError:
            raise KmlError(f"{results_file} is not valid JSON; re-create it with scripts/eval.py run_dir={path}") from None
    return found


def comparison_table(runs: list[tuple[Path, dict]]) -> str:
    """Paper-style markdown table: one row per run (method), a column per mode and
    overall, entries ``accuracy +- ci95`` in percent."""
    modes: list[str] = []
    for _, r in runs:
        for m in r["per_mode"]:
            if m not in modes:
                modes.append(m)
    header = "| method | setup | " + " | ".join(modes) + " | overall |"
    rule = "|" + "---|" * (len(modes) + 3)
    rows = [header, rule]
    for path, r in runs:
        e = r["eval"]
        setup = f"{r['mode']} {e['ways']}w{e['shots']}s"
        cells = []
        for m in modes:
            v = r["per_mode"].get(m)
            cells.append(f"{v['accuracy']:.2f} +- {v['ci95']:.2f}" if v else "-")
        o = r["overall"]
        rows.append(f"| {r['method']} | {setup} | " + " | ".join(cells) + f" | {o['accuracy']:.2f} +- {o['ci95']:.2f} |")
    return "\n".join(rows)


def write_comparison(patterns: list[str], output: str | Path, log=print) -> str:
    """Collect runs, print the comparison table and write it (markdown, plus a JSON
    with the same numbers next to it)."""
    from kml.io import atomic_write_json, atomic_write_text

    if not patterns:
        raise KmlError("run_dirs is empty: pass run directories or globs, e.g. run_dirs='[outputs/2026-11-26/*]'")
    runs = collect_results(patterns)
    table = comparison_table(runs)
    output = Path(output)
    atomic_write_text(output, table + "\n")
    atomic_write_json(
        output.with_suffix(".json"),
        [
            {"run_dir": str(path), "method": r["method"], "mode": r["mode"], "eval": r["eval"],
             "overall": r["overall"], "per_mode": r["per_mode"]}
            for path, r in runs
        ],
    )
    log(table)
    log(f"\nwritten to {output} and {output.with_suffix('.json')}")
    return table
