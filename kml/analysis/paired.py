"""Paired comparisons of methods on identical evaluation tasks.

Every run of the library is tested on the same seeded tasks (task ``i`` of a mode
depends only on the evaluation seed, the dataset, the split, ways/shots/queries and
``i``), and saves each task's accuracy (``task_accuracies.json``). Two methods can
therefore be compared task by task: the per-task difference ``d_i = a_i - b_i``
removes the variance that comes from how hard each task is, so the confidence
interval of the mean difference is far tighter than the two methods' own intervals
would suggest.

For ``n`` paired tasks this module reports, in accuracy points (percent):

- ``difference``: the mean of ``d_i``;
- ``ci95``: ``1.96 * sd(d) / sqrt(n)`` (``sd`` with ``ddof=1``), the same normal
  convention as the per-method intervals (:func:`kml.engine.evaluation.summarize`);
- ``p_value``: the two-sided paired t-test (Student's t with ``n - 1`` degrees of
  freedom on ``mean(d) / (sd(d) / sqrt(n))``);
- ``wins`` / ``losses`` / ``ties``: tasks where ``a`` is above, below or equal to ``b``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

__all__ = [
    "PairedDifference",
    "paired_difference",
    "student_t_two_sided_p",
    "pair_task_records",
    "compare_task_records",
    "PairingError",
    "stratified_ci95",
]


class PairingError(ValueError):
    """Two runs' task records cannot be paired (different evaluation tasks)."""


@dataclass(frozen=True)
class PairedDifference:
    """Mean paired difference ``a - b`` over ``tasks`` tasks, in accuracy points."""

    difference: float
    ci95: float
    std: float
    p_value: float
    tasks: int
    wins: int
    losses: int
    ties: int

    def as_dict(self) -> dict:
        return asdict(self)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 10_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _regularized_beta(a: float, b: float, x: float) -> float:
    """``I_x(a, b)``."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_two_sided_p(t: float, df: float) -> float:
    """Two-sided p-value ``P(|T| >= |t|)`` of Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if math.isinf(t):
        return 0.0
    return _regularized_beta(df / 2.0, 0.5, df / (df + t * t))


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> PairedDifference:
    """Mean paired difference of per-task accuracies ``a - b`` (each in [0, 1]).

    Returns:
        :class:`PairedDifference` in accuracy points (percent).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise PairingError(f"paired accuracies must be two vectors of one length, got {a.shape} and {b.shape}")
    n = int(a.size)
    if n == 0:
        raise PairingError("no paired tasks")
    d = a - b
    mean = float(d.mean())
    std = float(d.std(ddof=1)) if n > 1 else 0.0
    if n < 2:
        p = float("nan")
    elif std == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
    else:
        p = student_t_two_sided_p(mean / (std / math.sqrt(n)), n - 1)
    return PairedDifference(
        difference=100.0 * mean,
        ci95=100.0 * 1.96 * std / math.sqrt(n),
        std=100.0 * std,
        p_value=p,
        tasks=n,
        wins=int((d > 0).sum()),
        losses=int((d < 0).sum()),
        ties=int((d == 0).sum()),
    )


_PAIRING_KEYS = ("split", "seed", "ways", "shots", "queries")


def pair_task_records(a: Mapping, b: Mapping) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per mode, the accuracies of the tasks both records hold, in task-id order.

    Args:
        a: ``task_accuracies.json`` contents of the first run.
        b: ``task_accuracies.json`` contents of the second run.

    Raises:
        PairingError: the records come from different evaluation tasks (split, seed,
            ways, shots or queries differ) or share no mode.
    """
    differing = [k for k in _PAIRING_KEYS if a["eval"].get(k) != b["eval"].get(k)]
    if differing:
        detail = ", ".join(f"{k} {a['eval'].get(k)} vs {b['eval'].get(k)}" for k in differing)
        raise PairingError(f"{a['method']} and {b['method']} were tested on different tasks ({detail})")
    pairs = {}
    for mode, ra in a["modes"].items():
        rb = b["modes"].get(mode)
        if rb is None:
            continue
        ids_b = {t: i for i, t in enumerate(rb["task_ids"])}
        common = [(i, ids_b[t]) for i, t in enumerate(ra["task_ids"]) if t in ids_b]
        if not common:
            continue
        ia, ib = zip(*common)
        pairs[mode] = (np.asarray(ra["accuracy"])[list(ia)], np.asarray(rb["accuracy"])[list(ib)])
    if not pairs:
        raise PairingError(f"{a['method']} and {b['method']} share no evaluated mode")
    return pairs


def stratified_ci95(per_mode: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict:
    """The overall paired difference as the mean of the per-mode mean differences, with
    its 95 % CI stratified by mode: ``1.96 * sqrt(sum_m s_m^2 / n_m) / M``.

    Args:
        per_mode: per mode, the two runs' per-task accuracies in ``[0, 1]`` (as
            :func:`kml.analysis.paired.pair_task_records` returns them).

    Returns:
        ``{"difference", "ci95"}`` in accuracy points; with the same number of tasks
        in every mode ``difference`` equals the pooled mean.
    """
    means, variances = [], []
    for a, b in per_mode.values():
        d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
        means.append(float(d.mean()))
        variances.append(float(d.var(ddof=1)) / d.size if d.size > 1 else 0.0)
    modes = len(means)
    return {
        "difference": 100.0 * float(np.mean(means)),
        "ci95": 100.0 * 1.96 * math.sqrt(sum(variances)) / modes,
    }


def compare_task_records(a: Mapping, b: Mapping) -> dict:
    """Paired differences ``a - b``: ``{"per_mode": {mode: {...}}, "overall": {...},
    "overall_stratified": {...}}``; ``per_mode`` and ``overall`` are
    :meth:`PairedDifference.as_dict`, ``overall`` pooling the paired tasks of every mode,
    and ``overall_stratified`` is :func:`stratified_ci95`."""
    pairs = pair_task_records(a, b)
    per_mode = {mode: paired_difference(x, y).as_dict() for mode, (x, y) in pairs.items()}
    all_a = np.concatenate([x for x, _ in pairs.values()])
    all_b = np.concatenate([y for _, y in pairs.values()])
    return {"per_mode": per_mode, "overall": paired_difference(all_a, all_b).as_dict(),
            "overall_stratified": stratified_ci95(pairs)}
