"""A claim's advantage followed over training: the validation accuracy of one method minus
another's at every validation point, per training seed and across seeds.

Every run validates on the same fixed val tasks (:class:`kml.engine.evaluation.Validator`),
so at iteration ``i`` the two runs of one seed are compared on identical tasks. Runs that
recorded each val task's accuracy (``val_task_accuracies.jsonl``) are paired task by task
(the difference ± 1.96 sd / sqrt(n) over tasks); older runs kept only the mean, so their
per-seed figure is a difference without an interval. Across seeds: the mean of the per-seed
differences ± a Student-t interval over seeds. Whether the advantage grows or shrinks is
judged by the report's verdict rule on the per-seed *last − first* differences
(:func:`kml.analysis.seeds.seed_verdict`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kml.analysis.comparison import RunRecord
from kml.analysis.seeds import SeedVerdict, across_seeds, seed_verdict
from kml.campaign.records import CampaignRecords, Setting, method_kinds, runs_of, signed
from kml.io import read_jsonl
from kml.plotting import save_figure, subplots

__all__ = ["Advantage", "advantage", "setting_advantages", "advantage_section", "advantage_figure"]

#: the claims followed over training: (label, method kind a, method kind b)
FOLLOWED = (("KML − none", "kml", "none"), ("KML − FiLM", "kml", "film"), ("FiLM − none", "film", "none"))
VAL_TASKS = "val_task_accuracies.jsonl"


@dataclass
class Advantage:
    """Validation ``a − b`` of one setting over training.

    Attributes:
        per_seed: ``{seed: {iteration: (difference, ci95 or None)}}`` in accuracy points.
    """

    label: str
    a: str
    b: str
    per_seed: dict[int, dict[int, tuple[float, float | None]]] = field(default_factory=dict)

    @property
    def iterations(self) -> list[int]:
        """The validation points every seed has."""
        common = None
        for points in self.per_seed.values():
            common = set(points) if common is None else common & set(points)
        return sorted(common or ())

    def change(self) -> SeedVerdict:
        """The verdict on *last − first* (per seed), i.e. whether the advantage grows."""
        its = self.iterations
        return seed_verdict([p[its[-1]][0] - p[its[0]][0] for p in self.per_seed.values()])

    def as_dict(self) -> dict:
        return {"label": self.label, "a": self.a, "b": self.b,
                "per_seed": {str(s): {str(i): list(v) for i, v in p.items()} for s, p in self.per_seed.items()}}


def _validation(run: RunRecord) -> tuple[dict[int, float], dict[int, dict[str, list[float]]]]:
    """A run's overall val accuracy per iteration (``metrics.jsonl``) and, where recorded,
    its per-task val accuracies (``val_task_accuracies.jsonl``)."""
    means = {int(r["iteration"]): float(r["val"]["accuracy"]) for r in read_jsonl(run.path / "metrics.jsonl")
             if "val" in r}
    path = run.path / VAL_TASKS
    tasks = {int(r["iteration"]): r["modes"] for r in read_jsonl(path)} if path.is_file() else {}
    return means, tasks


def _paired(a: dict[str, list[float]], b: dict[str, list[float]]) -> tuple[float, float] | None:
    """The mean of per-task differences over the val tasks both have, ± 1.96 sd / sqrt(n)."""
    if set(a) != set(b) or any(len(a[m]) != len(b[m]) for m in a):
        return None
    d = 100.0 * np.concatenate([np.asarray(a[m], dtype=np.float64) - np.asarray(b[m], dtype=np.float64) for m in a])
    return float(d.mean()), 1.96 * float(d.std(ddof=1)) / np.sqrt(d.size) if d.size > 1 else 0.0


def advantage(c: CampaignRecords, setting: Setting, label: str, a: str, b: str) -> Advantage:
    """:class:`Advantage` of ``a − b`` over the seeds both methods have in ``setting``."""
    result = Advantage(label, a, b)
    runs_a, runs_b = runs_of(c, setting, a), runs_of(c, setting, b)
    for seed in sorted(set(runs_a) & set(runs_b)):
        (means_a, tasks_a), (means_b, tasks_b) = _validation(runs_a[seed]), _validation(runs_b[seed])
        points = {}
        for it in sorted(set(means_a) & set(means_b)):
            paired = _paired(tasks_a[it], tasks_b[it]) if it in tasks_a and it in tasks_b else None
            points[it] = paired if paired is not None else (means_a[it] - means_b[it], None)
        if points:
            result.per_seed[seed] = points
    return result


def setting_advantages(c: CampaignRecords, setting: Setting) -> list[Advantage]:
    """The followed claims (:data:`FOLLOWED`) whose two methods both validated in ``setting``."""
    kinds = method_kinds(c)
    out = []
    for label, kind_a, kind_b in FOLLOWED:
        if kind_a in kinds and kind_b in kinds:
            adv = advantage(c, setting, label, kinds[kind_a], kinds[kind_b])
            if adv.per_seed and len(adv.iterations) > 1:
                out.append(adv)
    return out


def _cell(adv: Advantage, iteration: int) -> str:
    values = [adv.per_seed[s][iteration] for s in sorted(adv.per_seed)]
    if len(values) == 1:
        diff, ci = values[0]
        return signed(diff) + (f" ± {ci:.2f}" if ci is not None else "")
    s = across_seeds([v[0] for v in values])
    return f"{signed(s.mean)} ± {s.ci95:.2f} ({', '.join(signed(v[0]) for v in values)})"


def _change_line(adv: Advantage) -> str:
    its, judged = adv.iterations, adv.change()
    per_seed = [p[its[-1]][0] - p[its[0]][0] for p in adv.per_seed.values()]
    figure = (f"{signed(per_seed[0])}" if len(per_seed) == 1 else
              f"{signed(float(np.mean(per_seed)))} ± {across_seeds(per_seed).ci95:.2f} over seeds "
              f"({', '.join(signed(v) for v in per_seed)})")
    return (f"- **{adv.a} − {adv.b}**, validation at {its[-1]} − at {its[0]} iterations: **{figure}** points; "
            f"the claim that the advantage grows with training: {judged.word}.")


def advantage_section(advantages: list[Advantage], figure: Path | None, link: str | None) -> str:
    """The markdown of a setting's advantages over training ("" without any)."""
    if not advantages:
        return ""
    iterations = sorted({i for adv in advantages for i in adv.iterations})
    rows = ["| iteration | " + " | ".join(f"{adv.a} − {adv.b}" for adv in advantages) + " |",
            "|---|" + "---|" * len(advantages)]
    for it in iterations:
        rows.append(f"| {it} | " + " | ".join(_cell(adv, it) if it in adv.iterations else "-" for adv in advantages)
                    + " |")
    lines = [
        "#### The advantage over training (validation)",
        "",
        "Validation accuracy of the first method minus the second's on the same fixed val tasks, in points, at "
        "every validation point: with several seeds the mean ± a t-interval over seeds (each seed's difference "
        "in brackets); with one seed its difference (± 1.96 sd / sqrt(n) over the val tasks where both runs "
        "recorded each task's accuracy). The last line of each contrast applies the verdict rule to the per-seed "
        "change from the first to the last validation point.",
        "",
        *rows,
        "",
        *(_change_line(adv) for adv in advantages),
    ]
    if figure is not None and link is not None:
        lines += ["", f"![the advantage over training]({link})"]
    return "\n".join(lines)


def advantage_figure(advantages: list[Advantage], path: Path, title: str) -> Path | None:
    """One panel per contrast: each seed's validation difference (thin) and the mean over
    seeds with its t-interval (thick, shaded)."""
    if not advantages:
        return None
    fig, axes = subplots(1, len(advantages), figsize=(4.2 * len(advantages), 3.4), squeeze=False)
    for ax, adv in zip(axes[0], advantages):
        its = adv.iterations
        for k, seed in enumerate(sorted(adv.per_seed)):
            ax.plot(its, [adv.per_seed[seed][i][0] for i in its], color=f"C{k % 10}", linewidth=0.9, alpha=0.8,
                    label=f"seed {seed}")
        if len(adv.per_seed) > 1:
            stats = [across_seeds([p[i][0] for p in adv.per_seed.values()]) for i in its]
            ax.plot(its, [s.mean for s in stats], color="black", linewidth=2, label="mean over seeds")
            ax.fill_between(its, [s.low for s in stats], [s.high for s in stats], color="black", alpha=0.12)
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set(title=f"{adv.a} − {adv.b}", xlabel="iteration", ylabel="val difference (points)")
        ax.title.set_fontsize(9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
