"""Statistics over training seeds, and a claim's verdict.

A paired difference on identical test tasks (:mod:`kml.analysis.paired`) measures how
two *trained models* differ; its confidence interval covers the sampling of test
tasks only. Training the same two methods again with another seed gives another pair
of models, and the difference moves by more than that interval. With several seeds
per method this module reports, in accuracy points:

- per seed: the paired mean difference ± its CI over tasks (as before);
- across seeds: the mean of the per-seed means ± a Student-t interval over seeds
  (``t_{0.975, n-1} * sd / sqrt(n)``, ``n`` seeds, ``sd`` with ``ddof=1``): the
  headline figure, since it covers what a new training run would give;
- a CI stratified by mode beside the pooled one: the pooled CI treats the tasks of all
  modes as one sample, so it mixes easy modes (Omniglot's 90 %) with hard ones
  (mini-ImageNet's 35 %); with the same number of tasks per mode the overall mean is
  the mean of the mode means, whose standard error is ``sqrt(sum_m s_m^2 / n_m) / M``.

:func:`verdict` turns an interval into the words of the claims table.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from kml.analysis.paired import stratified_ci95, student_t_two_sided_p

__all__ = ["AcrossSeeds", "across_seeds", "student_t_quantile", "stratified_ci95", "verdict", "VERDICTS"]

#: the claims table's verdicts
VERDICTS = ("holds", "does not hold", "not established")


def student_t_quantile(df: float, two_sided_p: float = 0.05) -> float:
    """The ``t`` with ``P(|T| >= t) = two_sided_p`` for Student's t with ``df`` degrees of
    freedom (e.g. 4.303 for ``df=2``, 1.960 as ``df -> inf``), by bisection."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    low, high = 0.0, 1.0
    while student_t_two_sided_p(high, df) > two_sided_p:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if student_t_two_sided_p(mid, df) > two_sided_p:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


@dataclass(frozen=True)
class AcrossSeeds:
    """The mean over seeds of a per-seed figure, with a t-interval over seeds.

    Attributes:
        mean: mean of the per-seed values.
        ci95: half-width ``t_{0.975, n-1} * sd / sqrt(n)`` (``nan`` for one seed).
        sd: standard deviation over seeds (``ddof=1``; ``nan`` for one seed).
        p_value: two-sided one-sample t-test of ``mean = 0`` over seeds.
        seeds: the number of seeds ``n``.
        values: the per-seed values.
    """

    mean: float
    ci95: float
    sd: float
    p_value: float
    seeds: int
    values: tuple[float, ...]

    @property
    def low(self) -> float:
        return self.mean - self.ci95

    @property
    def high(self) -> float:
        return self.mean + self.ci95

    def as_dict(self) -> dict:
        out = asdict(self)
        out["values"] = list(self.values)
        return out


def across_seeds(values: Sequence[float]) -> AcrossSeeds:
    """:class:`AcrossSeeds` of per-seed values (e.g. each seed's paired mean difference)."""
    x = np.asarray(list(values), dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError("across_seeds needs one value per seed")
    n = int(x.size)
    mean = float(x.mean())
    if n < 2:
        return AcrossSeeds(mean, float("nan"), float("nan"), float("nan"), n, tuple(map(float, x)))
    sd = float(x.std(ddof=1))
    half = student_t_quantile(n - 1) * sd / math.sqrt(n)
    if sd == 0.0:
        p = 1.0 if mean == 0.0 else 0.0
    else:
        p = student_t_two_sided_p(mean / (sd / math.sqrt(n)), n - 1)
    return AcrossSeeds(mean, half, sd, p, n, tuple(map(float, x)))


def verdict(low: float, high: float) -> str:
    """``holds`` when the 95 % interval ``[low, high]`` lies above 0, ``does not hold``
    below 0, ``not established`` when it contains 0."""
    if low > 0:
        return VERDICTS[0]
    if high < 0:
        return VERDICTS[1]
    return VERDICTS[2]
