"""The one figure helper of the library: figures drawn without ``matplotlib.pyplot``.

Figures are plain :class:`matplotlib.figure.Figure` objects rendered by the Agg
canvas, so plotting needs no display, never changes matplotlib's global backend and
leaves nothing open in pyplot's figure registry. Every PNG is written atomically.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["subplots", "save_figure"]


def subplots(
    nrows: int = 1,
    ncols: int = 1,
    figsize: tuple[float, float] = (6.4, 4.8),
    layout: str | None = None,
    **kwargs: Any,
):
    """``(figure, axes)`` like ``pyplot.subplots``, on a figure of its own (``layout``:
    e.g. ``"constrained"``; other keywords go to ``Figure.subplots``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout=layout)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG, atomically (a reader never sees half a file)."""
    from kml.io import atomic_write

    path = Path(path)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi, bbox_inches="tight"))
    return path
