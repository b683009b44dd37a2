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
from dataclasses import asdict, dataclass, field
from typing import Mapping, Sequence

import numpy as np

from kml.analysis.paired import PairingError, compare_task_records, stratified_ci95, student_t_two_sided_p

__all__ = [
    "AcrossSeeds",
    "Contrast",
    "MIN_SEEDS",
    "SeedVerdict",
    "VERDICTS",
    "accuracy_over_seeds",
    "across_seeds",
    "contrast_over_seeds",
    "holm_survivors",
    "seed_verdict",
    "stratified_ci95",
    "student_t_quantile",
    "verdict",
]

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


#: training seeds of both methods a verdict needs (:func:`seed_verdict`)
MIN_SEEDS = 3

_COUNTS = {1: "one seed", 2: "two seeds"}


@dataclass(frozen=True)
class SeedVerdict:
    """The verdict of a contrast from its per-seed paired differences (:func:`seed_verdict`).

    Attributes:
        word: ``holds``, ``does not hold``, ``not established`` or ``"<n> seed(s): no verdict"``.
        seeds: the number of training seeds both methods have.
        p_value: the two-sided one-sample t-test over seeds (``None`` under :data:`MIN_SEEDS`).
    """

    word: str
    seeds: int
    p_value: float | None

    @property
    def has_verdict(self) -> bool:
        return self.p_value is not None


def seed_verdict(per_seed: Sequence[float]) -> SeedVerdict:
    """The verdict rule over training seeds: with at least :data:`MIN_SEEDS` per-seed paired
    differences, :func:`verdict` of their t-interval over seeds; with fewer,
    ``"one seed: no verdict"`` (``"two seeds: ..."``): an interval over test tasks covers the
    sampling of test tasks, not training."""
    n = len(per_seed)
    if n < MIN_SEEDS:
        return SeedVerdict(f"{_COUNTS.get(n, f'{n} seeds')}: no verdict", n, None)
    s = across_seeds(per_seed)
    return SeedVerdict(verdict(s.low, s.high), n, s.p_value)


def holm_survivors(p_values: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down procedure: for each p-value (in the given order), whether its
    hypothesis is rejected at family-wise error ``alpha``: the ``i``-th smallest of ``m``
    p-values is compared with ``alpha / (m - i)`` (``i`` from 0), stopping at the first
    that is not below."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    survives = [False] * m
    for rank, index in enumerate(order):
        if p_values[index] > alpha / (m - rank):
            break
        survives[index] = True
    return survives


def accuracy_over_seeds(entries: Sequence[Mapping | None]) -> tuple[float, float] | None:
    """A method's accuracy from its seeds' result entries (``{"accuracy", "ci95"}``, a
    run's ``overall`` or one mode's; ``None`` where a seed lacks it): the mean over the
    seeds ± the t-interval over seeds (:func:`across_seeds`) when there are several, else
    the one seed's accuracy ± its CI over tasks; ``None`` without any entry."""
    present = [entry for entry in entries if entry]
    if not present:
        return None
    if len(present) == 1:
        return present[0]["accuracy"], present[0]["ci95"]
    s = across_seeds([entry["accuracy"] for entry in present])
    return s.mean, s.ci95


@dataclass
class Contrast:
    """The paired difference ``a − b`` of two methods in one setting, per training seed
    (on the identical test tasks of each seed's two runs) and across seeds
    (:func:`contrast_over_seeds` builds it).

    Attributes:
        per_seed: ``{seed: compare_task_records(a, b)}`` for every seed both methods have.
        error: why no seed could be paired (``None`` otherwise).
    """

    a: str
    b: str
    per_seed: dict[int, dict] = field(default_factory=dict)
    error: str | None = None

    @property
    def seeds(self) -> list[int]:
        return sorted(self.per_seed)

    def modes(self) -> list[str]:
        out: list[str] = []
        for cmp in self.per_seed.values():
            out += [m for m in cmp["per_mode"] if m not in out]
        return out

    def across(self, mode: str | None = None) -> AcrossSeeds:
        """The per-seed paired means (overall, or of ``mode``) across seeds."""
        values = [cmp["overall"]["difference"] if mode is None else cmp["per_mode"][mode]["difference"]
                  for cmp in self.per_seed.values() if mode is None or mode in cmp["per_mode"]]
        return across_seeds(values)

    def headline(self, mode: str | None = None) -> tuple[float, float, str] | None:
        """``(difference, ci95, over)``: across seeds (t-interval over seeds) when there are
        several, else the one seed's paired mean ± its CI over tasks; ``over`` is
        ``"seeds"`` or ``"tasks"``."""
        entries = [cmp["overall"] if mode is None else cmp["per_mode"].get(mode) for cmp in self.per_seed.values()]
        entries = [entry for entry in entries if entry is not None]
        if not entries:  # no seed has this mode
            return None
        if len(entries) > 1:
            s = across_seeds([entry["difference"] for entry in entries])
            return s.mean, s.ci95, "seeds"
        return entries[0]["difference"], entries[0]["ci95"], "tasks"

    def verdict(self) -> SeedVerdict:
        """The verdict by the rule over seeds (:func:`seed_verdict`) of the per-seed overall
        paired differences."""
        return seed_verdict([self.per_seed[seed]["overall"]["difference"] for seed in self.seeds])

    def as_dict(self) -> dict:
        out: dict = {"a": self.a, "b": self.b, "seeds": self.seeds, "per_seed": {str(k): v for k, v in
                                                                                 self.per_seed.items()}}
        if len(self.per_seed) > 1:
            out["across_seeds"] = {"overall": self.across().as_dict(),
                                   "per_mode": {m: self.across(m).as_dict() for m in self.modes()
                                                if sum(m in cmp["per_mode"] for cmp in self.per_seed.values()) > 1}}
        if self.error:
            out["error"] = self.error
        return out


def contrast_over_seeds(
    a: str, b: str, tasks_a: Mapping[int, Mapping | None], tasks_b: Mapping[int, Mapping | None]
) -> Contrast:
    """:class:`Contrast` of methods ``a`` and ``b`` over the training seeds both have.

    Args:
        a: the first method's name.
        b: the second method's name (the difference is ``a - b``).
        tasks_a: ``{seed: task records}`` of ``a``'s runs (a run's
            ``task_accuracies.json`` contents, ``None`` where it has none).
        tasks_b: the same of ``b``'s runs.

    Returns:
        the seeds both have, in ascending order, paired on their identical test tasks
        (:func:`kml.analysis.paired.compare_task_records`); ``error`` says why none could
        be (``"no common seed"``, ``"no per-task records"`` or the pairing error).
    """
    result = Contrast(a, b)
    errors = []
    for seed in sorted(set(tasks_a) & set(tasks_b)):
        ra, rb = tasks_a[seed], tasks_b[seed]
        if ra is None or rb is None:
            errors.append("no per-task records")
            continue
        try:
            result.per_seed[seed] = compare_task_records(ra, rb)
        except PairingError as err:
            errors.append(str(err))
    if not result.per_seed:
        result.error = errors[0] if errors else "no common seed"
    return result
