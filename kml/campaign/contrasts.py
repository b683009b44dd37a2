"""Paired contrasts of two methods of a campaign setting: per training seed, on the
identical test tasks, and across seeds (:mod:`kml.analysis.paired`, :mod:`kml.analysis.seeds`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from kml.analysis.paired import PairingError, compare_task_records
from kml.analysis.seeds import AcrossSeeds, across_seeds
from kml.campaign.records import CampaignRecords, Setting, methods_in, runs_marks, runs_of
from kml.campaign.verdicts import SeedVerdict, seed_verdict


@dataclass
class Contrast:
    """The paired difference ``a − b`` of two methods in one setting, per training seed
    (on the identical test tasks of each seed's two runs) and across seeds.

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
        """The verdict by the report's rule (:func:`kml.campaign.verdicts.seed_verdict`) from
        the per-seed overall paired differences."""
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


def contrast(c: CampaignRecords, setting: Setting, a: str, b: str) -> Contrast:
    """:class:`Contrast` of methods ``a`` and ``b`` over the seeds both have in ``setting``."""
    result = Contrast(a, b)
    runs_a, runs_b = runs_of(c, setting, a), runs_of(c, setting, b)
    errors = []
    for seed in sorted(set(runs_a) & set(runs_b)):
        ra, rb = runs_a[seed], runs_b[seed]
        if ra.tasks is None or rb.tasks is None:
            errors.append("no per-task records")
            continue
        try:
            result.per_seed[seed] = compare_task_records(ra.tasks, rb.tasks)
        except PairingError as err:
            errors.append(str(err))
    if not result.per_seed:
        result.error = errors[0] if errors else "no common seed"
    return result


def setting_contrasts(c: CampaignRecords, setting: Setting) -> list[Contrast]:
    """Every method against the campaign's baseline, then the campaign's extra pairs, each
    once, where both methods have runs in ``setting``."""
    methods = methods_in(c, setting)
    base = c.spec.get("baseline")
    pairs: list[tuple[str, str]] = []
    if base in methods:
        pairs += [(m, base) for m in methods if m != base]
    for a, b in c.spec.get("pairs") or []:
        if a in methods and b in methods and (a, b) not in pairs:
            pairs.append((a, b))
    out = []
    for a, b in pairs:
        cmp = contrast(c, setting, a, b)
        if cmp.per_seed or cmp.error != "no common seed":
            out.append(cmp)
    return out


def contrast_marks(c: CampaignRecords, setting: Setting, cmp: Contrast) -> str:
    """The marks of the runs a contrast rests on (both methods, its seeds)."""
    return runs_marks(c, [r for m in (cmp.a, cmp.b) for seed, r in runs_of(c, setting, m).items()
                          if seed in cmp.seeds])


def forest_contrasts(c: CampaignRecords, setting: Setting, contrasts: list[Contrast]) -> list[Contrast]:
    """The contrasts of a setting's forest plot: ``contrasts`` (every method against the
    baseline, and the campaign's pairs), except that a method the ablation compares with a
    reference of its own is drawn against that reference, not against the baseline."""
    methods = methods_in(c, setting)
    base = c.spec.get("baseline")
    rows = [row for row in c.spec.get("ablation") or []
            if len(row) == 3 and row[0] in methods and row[1] in methods and row[1] != base]
    variants = {row[0] for row in rows}
    out = [cmp for cmp in contrasts if not (cmp.b == base and cmp.a in variants)]
    drawn = {(cmp.a, cmp.b) for cmp in out}
    for a, b, _ in rows:
        if (a, b) not in drawn:
            drawn.add((a, b))
            cmp = contrast(c, setting, a, b)
            if cmp.per_seed:
                out.append(cmp)
    return out
