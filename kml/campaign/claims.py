"""The claims table of the results report: one row per claim of the paper and setting,
with the paper's figure, ours and a verdict by the stated rule (:func:`kml.analysis.seeds.seed_verdict`),
and whether that verdict survives a Holm correction over every claim with a verdict."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from kml.analysis.seeds import Contrast, SeedVerdict, holm_survivors, seed_verdict
from kml.campaign.contrasts import contrast, contrast_marks
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

__all__ = ["CLAIMS", "ClaimRow", "claim_rows", "claims_section"]

RULE = (
    "*verdict* (our rule): a claim gets a verdict only when both methods have at least three training seeds; "
    "then **holds** when the Student-t interval over seeds (95 %, n − 1 degrees of freedom) of the per-seed paired "
    "differences lies above 0, **does not hold** when it lies below 0, **not established** otherwise. With one or "
    "two seeds the row shows the paired interval over test tasks (one seed) or over the two seeds, and *no "
    "verdict*: the interval over tasks covers the sampling of test tasks, not training, and training seeds move a "
    "contrast by more than it. *Holm*: whether a verdict survives a Holm correction over every claim with a "
    "verdict (family-wise error 0.05, the p-values of the one-sample t-tests over seeds); *-* where there is "
    "nothing to correct."
)

#: the paper's claims on accuracy: (label, method kind a, method kind b); a > b is claimed
CLAIMS = (("KML > none", "kml", "none"), ("KML > FiLM", "kml", "film"), ("FiLM > none", "film", "none"),
          ("KML > Multi", "kml", "multi"))


@dataclass
class ClaimRow:
    """One row of the claims table; ``holm`` is filled in once every row is known."""

    claim: str
    setting: str
    paper: str
    ours: str
    seeds: str
    verdict: SeedVerdict
    holm: str = "-"

    def markdown(self) -> str:
        return (f"| {self.claim} | {self.setting} | {self.paper} | {self.ours} | {self.seeds} | {self.verdict.word} "
                f"| {self.holm} |")


def _family(c: CampaignRecords) -> str:
    learners = {m.get("learner") for m in c.spec.get("methods", [])}
    return "ProtoNet family" if learners == {"protonet"} else "MAML family" if learners == {"maml"} else "mixed"


def _setting_label(c: CampaignRecords, mode: str, shots: int) -> str:
    budget = c.spec.get("budget", {})
    gpu = any((r.get("machine") or {}).get("gpu") for r in c.records.values())
    return (f"[{mode}, {shots}-shot](#{anchor(c)}) ({'GPU' if gpu else 'CPU'}, {budget.get('image_size')}px, "
            f"{budget.get('iterations')} it.)")


def _seeds_cell(cmp: Contrast) -> str:
    if len(cmp.seeds) > 1:
        return f"{len(cmp.seeds)} ({seeds_text(cmp.seeds)})"
    return f"one seed ({cmp.seeds[0]})"


def _accuracy_claims(campaigns: list[CampaignRecords]) -> tuple[list[ClaimRow], bool]:
    """The accuracy claims of every campaign and setting, and whether a row carries a code mark."""
    rows, marked = [], False
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
                mean, ci, _ = cmp.headline()
                marks = contrast_marks(c, setting, cmp)
                marked = marked or bool(marks)
                rows.append(ClaimRow(f"{label} ({_family(c)}: {cmp.a} − {cmp.b})", _setting_label(c, mode, shots),
                                     signed(paper) if paper is not None else "-", f"**{signed(mean)} ± {ci:.2f}**",
                                     _seeds_cell(cmp) + marks, cmp.verdict()))
    return rows, marked


def _positive(entry: dict, neutral: float) -> np.ndarray:
    """Per source task of a transference checkpoint: 1 where LR < 1 beyond the neutral band."""
    from kml.analysis.transference import POSITIVE, transfer_classes

    return (transfer_classes(np.asarray(entry["lr"], dtype=np.float64), neutral) == POSITIVE).reshape(-1)


def _paired_share(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The paired difference of two positive shares over the same sources, in points ± 1.96 sd / sqrt(n)."""
    d = x.astype(np.float64) - y.astype(np.float64)
    return 100.0 * float(d.mean()), 100.0 * 1.96 * float(d.std(ddof=1)) / np.sqrt(d.size)


def _one_seed(run: dict) -> str:
    match = re.search(r"_seed(\d+)$", run.get("run_id", ""))
    return f"one seed ({match.group(1)})" if match else "one seed"


def _transference_claims(c: CampaignRecords) -> list[ClaimRow]:
    """The transference claims of a campaign with a transference record, paired over the
    same source tasks (which every checkpoint and method share): KML gives more positive
    transfer than no modulation, at every analysed checkpoint; and transfer grows more
    positive as training proceeds (last − first checkpoint). One training seed each."""
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
    rows = []
    if kml is not None and none is not None:
        pa, pb = paper.get(kml["label"]), paper.get(none["label"])
        paper_text = f"{signed(pa - pb)} ({pa:g} vs {pb:g} % positive)" if pa is not None and pb is not None else "-"
        theirs = {entry["iteration"]: entry for entry in none["checkpoints"]}
        for entry in kml["checkpoints"]:
            if entry["iteration"] not in theirs:
                continue
            mean, ci = _paired_share(_positive(entry, neutral), _positive(theirs[entry["iteration"]], neutral))
            rows.append(ClaimRow(f"KML: more positive transfer than none (share of LR < 1 at {entry['iteration']} "
                                 "iterations, points)", setting, paper_text, f"**{signed(mean)} ± {ci:.2f}**",
                                 _one_seed(kml), seed_verdict([mean])))
    for run in (none, kml):  # the paper shows this for its histograms during training, without numbers
        if run is None or len(run["checkpoints"]) < 2:
            continue
        first, last = run["checkpoints"][0], run["checkpoints"][-1]
        mean, ci = _paired_share(_positive(last, neutral), _positive(first, neutral))
        rows.append(ClaimRow(f"More positive transfer as training proceeds ({run['label']}: share of LR < 1 at "
                             f"{last['iteration']} − at {first['iteration']} iterations, points)", setting,
                             "histograms only, no number", f"**{signed(mean)} ± {ci:.2f}**", _one_seed(run),
                             seed_verdict([mean])))
    return rows


def claim_rows(campaigns: list[CampaignRecords]) -> tuple[list[ClaimRow], bool]:
    """Every claim row, with its Holm column filled in, and whether a row carries a code mark."""
    rows, marked = _accuracy_claims(campaigns)
    for c in campaigns:
        rows += _transference_claims(c)
    judged = [row for row in rows if row.verdict.has_verdict]
    survives = holm_survivors([row.verdict.p_value for row in judged])
    for row, kept in zip(judged, survives):
        if row.verdict.word in ("holds", "does not hold"):
            row.holm = "survives" if kept else "does not survive"
    return rows, marked


def claims_section(campaigns: list[CampaignRecords]) -> str:
    """One row per claim of the paper and setting: the paper's figure (the difference of
    the same two methods in its column, in its own setting), ours, a verdict by the stated
    rule and its Holm correction."""
    rows, marked = claim_rows(campaigns)
    judged = sum(row.verdict.has_verdict for row in rows)
    return "\n".join([
        "## Claims",
        "",
        "One row per claim of the paper and setting. *paper*: the difference of the same two methods in the "
        "paper's tables, in the paper's own setting (which differs from ours as each section says). *ours*: the "
        "paired difference on the identical test tasks, in accuracy points; with several training seeds the mean "
        "of the per-seed differences ± a Student-t interval over seeds (n − 1 degrees of freedom), with one seed "
        "the paired mean ± 1.96 sd / sqrt(n) over tasks, which covers the test tasks but not training.",
        "",
        RULE + f" {judged} of the {len(rows)} claims have a verdict.",
        "",
        "| claim | setting | paper | ours | seeds | verdict | Holm |",
        "|---|---|---|---|---|---|---|",
        *(row.markdown() for row in rows),
        *(["", CODE_MARKS_NOTE] if marked else []),
    ])
