"""Paired contrasts of two methods of a campaign setting: per training seed, on the
identical test tasks, and across seeds (:mod:`kml.analysis.paired`, :mod:`kml.analysis.seeds`)."""

from __future__ import annotations

from kml.analysis.seeds import Contrast, contrast_over_seeds
from kml.campaign.records import CampaignRecords, Setting, methods_in, runs_marks, runs_of


def contrast(c: CampaignRecords, setting: Setting, a: str, b: str) -> Contrast:
    """:class:`~kml.analysis.seeds.Contrast` of methods ``a`` and ``b`` over the seeds both
    have in ``setting``."""
    runs_a, runs_b = runs_of(c, setting, a), runs_of(c, setting, b)
    return contrast_over_seeds(a, b, {seed: r.tasks for seed, r in runs_a.items()},
                               {seed: r.tasks for seed, r in runs_b.items()})


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
