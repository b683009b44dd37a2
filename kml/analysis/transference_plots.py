"""Plots of the transference analysis (:mod:`kml.analysis.transference`):

- :func:`plot_lr_histograms` -- a grid of LR histograms, one panel per
  checkpoint, bars coloured positive / neutral / negative, shares in the panel;
- :func:`plot_lr_overlay` -- several runs (e.g. MProtoNet vs MProtoNet+KML)
  overlaid at the same checkpoint(s);
- :func:`plot_mode_matrix` -- the mode-to-mode matrix as a heatmap (mean LR,
  share of positive transfer).

Every function takes plain arrays / result objects and an output path, writes
one PNG atomically and returns the path. :func:`lr_histogram` draws one panel
onto an existing axes for custom figures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np

from kml.analysis.transference import (
    DEFAULT_NEUTRAL,
    NEGATIVE,
    NEUTRAL,
    POSITIVE,
    ModeMatrix,
    TransferShares,
    transfer_classes,
    transfer_shares,
)
from kml.plotting import save_figure, subplots

__all__ = [
    "TRANSFER_COLORS",
    "lr_histogram",
    "lr_bin_edges",
    "plot_lr_histograms",
    "plot_lr_overlay",
    "plot_mode_matrix",
]

#: colours of positive / neutral / negative transfer
TRANSFER_COLORS = {"positive": "#2a9d8f", "neutral": "#a0a0a0", "negative": "#e76f51"}
_RUN_COLORS = ("#264653", "#e76f51", "#2a9d8f", "#e9c46a", "#8d5a97", "#457b9d", "#f4a261", "#6a994e")


def _values(lr) -> np.ndarray:
    if hasattr(lr, "detach"):
        lr = lr.detach().cpu().double().numpy()
    return np.asarray(lr, dtype=np.float64).reshape(-1)


def _display_range(arrays: Sequence[np.ndarray], neutral: float) -> tuple[float, float]:
    """A common x-range: the 0.5-99.5 percentiles of all values (so that a few
    outliers do not squash the histogram), always including the neutral band."""
    values = np.concatenate([a for a in arrays if a.size]) if arrays else np.array([1.0])
    lo, hi = np.percentile(values, [0.5, 99.5]) if values.size else (1.0, 1.0)
    lo, hi = min(lo, 1.0 - 2 * neutral), max(hi, 1.0 + 2 * neutral)
    if hi - lo < 1e-9:
        lo, hi = 1.0 - 1e-3, 1.0 + 1e-3
    pad = 0.03 * (hi - lo)
    return float(lo - pad), float(hi + pad)


def lr_bin_edges(value_range: tuple[float, float], neutral: float, bins: int = 40) -> np.ndarray:
    """``bins`` equal bins over ``value_range``, with the neutral band's limits
    ``1 +- neutral`` added as edges so that no bar straddles two classes."""
    lo, hi = value_range
    edges = np.linspace(lo, hi, bins + 1)
    band = [e for e in (1.0 - neutral, 1.0 + neutral) if lo < e < hi]
    if band:
        # drop regular inner edges closer than a quarter bin to a band limit (no slivers)
        width = (hi - lo) / bins
        inner = edges[1:-1]
        inner = inner[np.min(np.abs(inner[:, None] - np.asarray(band)[None, :]), axis=1) >= 0.25 * width]
        edges = np.unique(np.concatenate([[lo], inner, band, [hi]]))
    return edges


def _shares_text(shares: TransferShares) -> str:
    return (
        f"positive {shares.positive:.1f}%\n"
        f"neutral {shares.neutral:.1f}%\n"
        f"negative {shares.negative:.1f}%\n"
        f"n = {shares.total}"
    )


def _lr_axes(ax, edges: np.ndarray, neutral: float, title: str | None, band_alpha: float) -> None:
    """Common decoration of an LR histogram panel: neutral band, LR = 1 line, labels."""
    if neutral > 0:
        ax.axvspan(1.0 - neutral, 1.0 + neutral, color=TRANSFER_COLORS["neutral"], alpha=band_alpha, lw=0)
    ax.axvline(1.0, color="black", lw=0.8, ls="--")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("LR = L_after / L_before")
    ax.set_ylabel("source tasks")
    if title:
        ax.set_title(title, fontsize=10)


def lr_histogram(
    ax,
    lr,
    neutral: float = DEFAULT_NEUTRAL,
    bins: int = 40,
    value_range: tuple[float, float] | None = None,
    title: str | None = None,
) -> TransferShares:
    """Draw one LR histogram onto ``ax``: stacked bars coloured by class (values
    outside ``value_range`` are counted in the edge bins), a dashed line at LR = 1,
    the neutral band shaded, and the shares written in the panel.

    Returns the :class:`~kml.analysis.transference.TransferShares` of all values.
    """
    values = _values(lr)
    shares = transfer_shares(values, neutral)
    value_range = value_range or _display_range([values], neutral)
    edges = lr_bin_edges(value_range, neutral, bins)
    shown = np.clip(values, edges[0], edges[-1])
    classes = transfer_classes(values, neutral)
    groups = [shown[classes == k] for k in (POSITIVE, NEUTRAL, NEGATIVE)]
    ax.hist(
        groups,
        bins=edges,
        stacked=True,
        color=[TRANSFER_COLORS[k] for k in ("positive", "neutral", "negative")],
        label=[
            f"positive (LR < {1 - neutral:g})",
            f"neutral (|LR - 1| <= {neutral:g})",
            f"negative (LR > {1 + neutral:g})",
        ],
        edgecolor="white",
        linewidth=0.3,
    )
    _lr_axes(ax, edges, neutral, title, band_alpha=0.12)
    ax.text(
        0.98,
        0.97,
        _shares_text(shares),
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=8,
        bbox=dict(boxstyle="round,pad=0.3", facecolor="white", alpha=0.85, edgecolor="#cccccc"),
    )
    return shares


def _grid(count: int, max_cols: int = 4) -> tuple[int, int]:
    cols = max(1, min(max_cols, count))
    return math.ceil(count / cols), cols


def plot_lr_histograms(
    panels: Sequence[tuple[str, object]],
    path: str | Path,
    neutral: float = DEFAULT_NEUTRAL,
    bins: int = 40,
    title: str | None = None,
    shared_range: bool = True,
) -> Path:
    """A grid of LR histograms, one panel per ``(panel title, lr values)``
    (typically one per checkpoint: ``("5000 iterations", lr)``).

    With ``shared_range`` all panels use the same x-range so that they compare
    directly. Shares are computed from every value.
    """
    if not panels:
        raise ValueError("no histogram panels to plot")
    arrays = [_values(lr) for _, lr in panels]
    common = _display_range(arrays, neutral) if shared_range else None
    rows, cols = _grid(len(panels))
    fig, axes = subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, (name, _), values in zip(axes.flat, panels, arrays):
        lr_histogram(ax, values, neutral, bins, common, name)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.02))
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return save_figure(fig, path)


def plot_lr_overlay(
    panels: Sequence[tuple[str, Sequence[tuple[str, object]]]],
    path: str | Path,
    neutral: float = DEFAULT_NEUTRAL,
    bins: int = 40,
    title: str | None = None,
) -> Path:
    """Several runs overlaid, one panel per checkpoint.

    Args:
        panels: ``[(panel title, [(run label, lr values), ...]), ...]``; every
            panel shows the runs as step histograms on a common range, each
            legend entry with that run's positive / neutral / negative shares.
    """
    if not panels:
        raise ValueError("no overlay panels to plot")
    arrays = [_values(lr) for _, series in panels for _, lr in series]
    value_range = _display_range(arrays, neutral)
    edges = lr_bin_edges(value_range, neutral, bins)
    rows, cols = _grid(len(panels), max_cols=3)
    fig, axes = subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for ax, (name, series) in zip(axes.flat, panels):
        for k, (label, lr) in enumerate(series):
            values = _values(lr)
            shares = transfer_shares(values, neutral)
            color = _RUN_COLORS[k % len(_RUN_COLORS)]
            legend = f"{label}: {shares.positive:.0f}/{shares.neutral:.0f}/{shares.negative:.0f}%"
            clipped = np.clip(values, edges[0], edges[-1])
            ax.hist(clipped, bins=edges, histtype="stepfilled", alpha=0.18, color=color)
            ax.hist(clipped, bins=edges, histtype="step", lw=1.6, color=color, label=legend)
        _lr_axes(ax, edges, neutral, name, band_alpha=0.15)
        ax.legend(fontsize=7, title="positive/neutral/negative", title_fontsize=7, loc="upper right")
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_mode_matrix(
    panels: Sequence[tuple[str, ModeMatrix]],
    path: str | Path,
    title: str | None = None,
) -> Path:
    """Mode-to-mode transference heatmaps, one panel per ``(title, ModeMatrix)``.

    Cell ``(A, B)``: sources of mode ``A`` onto targets of mode ``B``; the colour
    is the mean LR on a diverging scale centred at 1 (blue: positive transfer,
    red: negative), the text the mean LR and the share of positive transfer.
    """
    if not panels:
        raise ValueError("no mode matrices to plot")
    from matplotlib.colors import TwoSlopeNorm

    spread = max(float(np.max(np.abs(m.mean_lr - 1.0))) for _, m in panels)
    spread = max(spread, 1e-6)
    norm = TwoSlopeNorm(vcenter=1.0, vmin=max(1.0 - spread, 0.0), vmax=1.0 + spread)
    rows, cols = _grid(len(panels), max_cols=3)
    n_src = max(len(m.source_modes) for _, m in panels)
    n_tgt = max(len(m.target_modes) for _, m in panels)
    fig, axes = subplots(
        rows,
        cols,
        figsize=(1.8 + cols * (0.3 + 0.95 * n_tgt) + 0.8, rows * (1.5 + 0.85 * n_src)),
        squeeze=False,
        layout="constrained",
    )
    image = None
    for k, (ax, (name, matrix)) in enumerate(zip(axes.flat, panels)):
        image = ax.imshow(matrix.mean_lr, cmap="RdBu_r", norm=norm)
        ax.set_xticks(range(len(matrix.target_modes)), matrix.target_modes, rotation=30, ha="right", fontsize=8)
        ax.set_xlabel("target mode")
        if k % cols == 0:
            ax.set_yticks(range(len(matrix.source_modes)), matrix.source_modes, fontsize=8)
            ax.set_ylabel("source mode")
        else:
            ax.set_yticks(range(len(matrix.source_modes)), [""] * len(matrix.source_modes))
        ax.set_title(name, fontsize=10)
        for a in range(len(matrix.source_modes)):
            for b in range(len(matrix.target_modes)):
                ax.text(
                    b,
                    a,
                    f"{matrix.mean_lr[a, b]:.4f}\n{matrix.positive[a, b]:.0f}% pos",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if abs(float(norm(matrix.mean_lr[a, b])) - 0.5) > 0.35 else "black",
                )
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.8, label="mean LR")
    if title:
        fig.suptitle(title, fontsize=11)
    return save_figure(fig, path)
