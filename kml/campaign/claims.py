"""The claims table of the results report: one row per claim of the paper and setting,
with the paper's figure, ours and a verdict by the stated rule (:mod:`kml.campaign.verdicts`)."""

from __future__ import annotations

import re

import numpy as np

from kml.analysis.seeds import verdict
from kml.campaign.contrasts import Contrast, contrast, contrast_marks
from kml.campaign.records import (
    CODE_MARKS_NOTE,
    CampaignRecords,
    anchor,
    method_kinds,
    paper_difference,
    seeds_text,
    settings_of,
    signed,
)

#: the paper's claims on accuracy: (label, method kind a, method kind b); a > b is claimed
CLAIMS = (("KML > none", "kml", "none"), ("KML > FiLM", "kml", "film"), ("FiLM > none", "film", "none"),
          ("KML > Multi", "kml", "multi"))


def _family(c: CampaignRecords) -> str:
    learners = {m.get("learner") for m in c.spec.get("methods", [])}
    return "ProtoNet family" if learners == {"protonet"} else "MAML family" if learners == {"maml"} else "mixed"


def _setting_label(c: CampaignRecords, mode: str, shots: int) -> str:
    budget = c.spec.get("budget", {})
    gpu = any((r.get("machine") or {}).get("gpu") for r in c.records.values())
    return (f"[{mode}, {shots}-shot](#{anchor(c)}) ({'GPU' if gpu else 'CPU'}, {budget.get('image_size')}px, "
            f"{budget.get('iterations')} it.)")


def _claim_cells(cmp: Contrast) -> tuple[str, str, str]:
    """``(ours, seeds, verdict)`` of a claim's contrast: across seeds (t-interval over
    seeds) where it has several, else "one seed" with the paired CI over tasks."""
    mean, ci, over = cmp.headline()
    word = verdict(mean - ci, mean + ci)
    if over == "seeds":
        return f"**{signed(mean)} ± {ci:.2f}**", f"{len(cmp.seeds)} ({seeds_text(cmp.seeds)})", word
    return f"**{signed(mean)} ± {ci:.2f}**", f"one seed ({cmp.seeds[0]})", word


def _transference_claims(c: CampaignRecords) -> list[str]:
    """The transference claims of a campaign with a transference record: KML gives more
    positive transfer than no modulation, and transfer grows more positive as training
    proceeds (paired over the same source tasks, which every checkpoint and method share;
    one seed)."""
    from kml.analysis.transference import POSITIVE, transfer_classes

    t = c.transference
    if not t:
        return []
    kinds = method_kinds(c)
    by_label = {run["label"]: run for run in t["runs"]}
    kml, none = by_label.get(kinds.get("kml")), by_label.get(kinds.get("none"))
    neutral = t["settings"]["neutral"]
    paper = ((c.spec.get("paper") or {}).get("transference_positive") or {})
    setting = (f"{c.name}: {t['settings']['source_mode']} → {t['settings']['target_mode']}, "
               f"{t['settings']['sources']} sources, α = {t['settings']['alpha']:g}")

    def positive(entry) -> np.ndarray:
        return (transfer_classes(np.asarray(entry["lr"], dtype=np.float64), neutral) == POSITIVE).reshape(-1)

    def paired(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        d = x.astype(np.float64) - y.astype(np.float64)
        return 100.0 * float(d.mean()), 100.0 * 1.96 * float(d.std(ddof=1)) / np.sqrt(d.size)

    def seed_label(run) -> str:
        match = re.search(r"_seed(\d+)$", run.get("run_id", ""))
        return f"one seed ({match.group(1)})" if match else "one seed"

    rows = []
    if kml is not None and none is not None:
        mean, ci = paired(positive(kml["checkpoints"][-1]), positive(none["checkpoints"][-1]))
        pa, pb = paper.get(kml["label"]), paper.get(none["label"])
        paper_text = f"{signed(pa - pb)} ({pa:g} vs {pb:g} % positive)" if pa is not None and pb is not None else "-"
        rows.append(f"| KML: more positive transfer than none (share of LR < 1, last checkpoint, points) | {setting} "
                    f"| {paper_text} | **{signed(mean)} ± {ci:.2f}** | {seed_label(kml)} "
                    f"| {verdict(mean - ci, mean + ci)} |")
    for run in (none, kml):  # the paper shows this for its histograms during training, without numbers
        if run is None or len(run["checkpoints"]) < 2:
            continue
        first, last = run["checkpoints"][0], run["checkpoints"][-1]
        mean, ci = paired(positive(last), positive(first))
        rows.append(f"| More positive transfer as training proceeds ({run['label']}: share of LR < 1 at "
                    f"{last['iteration']} − at {first['iteration']} iterations, points) | {setting} | histograms only, "
                    f"no number | **{signed(mean)} ± {ci:.2f}** | {seed_label(run)} "
                    f"| {verdict(mean - ci, mean + ci)} |")
    return rows


def claims_section(campaigns: list[CampaignRecords]) -> str:
    """One row per claim of the paper and setting: the paper's figure (the difference of
    the same two methods in its column, in its own setting), ours and a verdict."""
    rows = ["| claim | setting | paper | ours | seeds | verdict |", "|---|---|---|---|---|---|"]
    marked = False
    for label, kind_a, kind_b in CLAIMS:
        for c in campaigns:
            kinds = method_kinds(c)
            if kind_a not in kinds or kind_b not in kinds:
                continue
            for (mode, shots), setting in settings_of(c).items():
                cmp = contrast(c, setting, kinds[kind_a], kinds[kind_b])
                if not cmp.per_seed:
                    continue
                paper = paper_difference(c, cmp.a, cmp.b, shots)
                ours, seeds, word = _claim_cells(cmp)
                marks = contrast_marks(c, setting, cmp)
                marked = marked or bool(marks)
                seeds += marks
                rows.append(f"| {label} ({_family(c)}: {cmp.a} − {cmp.b}) | {_setting_label(c, mode, shots)} | "
                            f"{signed(paper) if paper is not None else '-'} | {ours} | {seeds} | {word} |")
    for c in campaigns:
        rows += _transference_claims(c)
    return "\n".join([
        "## Claims",
        "",
        "One row per claim of the paper and setting. *paper*: the difference of the same two methods in the "
        "paper's tables, in the paper's own setting (which differs from ours as each section says). *ours*: the "
        "paired difference on the identical test tasks, in accuracy points; with several training seeds the mean "
        "of the per-seed differences ± a Student-t interval over seeds (n − 1 degrees of freedom), with one seed "
        "the paired mean ± 1.96 sd / sqrt(n) over tasks, which covers the test tasks but not training. "
        "*verdict* (our rule): **holds** when the 95 % interval lies above 0, **does not hold** when it lies "
        "below 0, **not established** otherwise; a one-seed verdict says nothing about a new training run.",
        "",
        *rows,
        *(["", CODE_MARKS_NOTE] if marked else []),
    ])
