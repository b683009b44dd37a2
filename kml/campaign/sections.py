"""The markdown sections of one campaign setting in the results report: accuracy tables,
paired contrasts, the ablation, the data, transference, modulation diagnostics and the budget."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kml.analysis.comparison import format_p, modes_of
from kml.analysis.seeds import Contrast, accuracy_over_seeds, verdict
from kml.campaign.contrasts import contrast, contrast_marks
from kml.campaign.records import (
    CODE_MARKS_NOTE,
    CampaignRecords,
    Setting,
    method_kinds,
    methods_in,
    paper_value,
    relative_link,
    runs_marks,
    runs_of,
    seeds_text,
    signed,
)


def _cell(value: tuple[float, float, str] | None) -> str:
    if value is None:
        return "-"
    mean, ci, _ = value
    return f"{signed(mean)} ± {ci:.2f}"


def _contrast_row(cmp: Contrast, label: str, modes: list[str]) -> str:
    """The headline table's row of one contrast."""
    if not cmp.per_seed:
        return f"| {label} | " + " | ".join("-" for _ in modes) + f" | {cmp.error} | - | - | - | - |"
    cells = [_cell(cmp.headline(m)) for m in modes]
    mean, ci, over = cmp.headline()
    if over == "seeds":
        stratified, p, wlt = "-", format_p(cmp.across().p_value), "-"
    else:
        o = next(iter(cmp.per_seed.values()))["overall"]
        st = next(iter(cmp.per_seed.values())).get("overall_stratified")
        stratified = f"± {st['ci95']:.2f}" if st else "-"
        p, wlt = format_p(o["p_value"]), f"{o['wins']} / {o['losses']} / {o['ties']}"
    return (f"| {label} | " + " | ".join(cells) + f" | **{signed(mean)} ± {ci:.2f}** | {stratified} | "
            f"{seeds_text(cmp.seeds)} | {p} | {wlt} |")


def _contrast_sentence(cmp: Contrast, label: str, modes: list[str]) -> str:
    """One sentence per contrast: its figure, its verdict (or why none) and the modes where
    it is beyond its interval."""
    mean, ci, over = cmp.headline()
    judged = cmp.verdict()
    if judged.has_verdict:
        what = f"verdict: **{judged.word}**"
    else:
        side = verdict(mean - ci, mean + ci)  # the interval's side of 0, not a verdict
        what = {"holds": f"{cmp.a} above {cmp.b}", "does not hold": f"{cmp.a} below {cmp.b}",
                "not established": "no difference"}[side] + f" on these test tasks ({judged.word})"
    over_text = (f"t-interval over {len(cmp.seeds)} seeds" if over == "seeds"
                 else f"seed {cmp.seeds[0]}, {next(iter(cmp.per_seed.values()))['overall']['tasks']} paired tasks")
    better = [m for m in modes if (h := cmp.headline(m)) and h[0] - h[1] > 0]
    worse = [m for m in modes if (h := cmp.headline(m)) and h[0] + h[1] < 0]
    detail = "; ".join(x for x in (f"better on {', '.join(better)}" if better else "",
                                     f"worse on {', '.join(worse)}" if worse else "") if x)
    return (f"- **{label}: {signed(mean)} ± {ci:.2f} points** ({over_text}): {what}"
            + (f" ({detail} at 95%)" if detail else "") + ".")


def _per_seed_contrasts(contrasts: list[Contrast], modes: list[str]) -> str:
    """The per-seed table of the contrasts with several seeds ("" without any)."""
    several = [cmp for cmp in contrasts if len(cmp.per_seed) > 1]
    if not several:
        return ""
    rows = [
        "| comparison | seed | " + " | ".join(modes) + " | **overall** | stratified by mode | p |",
        "|" + "---|" * (len(modes) + 5),
    ]
    for cmp in several:
        for seed, r in cmp.per_seed.items():
            cells = [f"{signed(r['per_mode'][m]['difference'])} ± {r['per_mode'][m]['ci95']:.2f}"
                     if m in r["per_mode"] else "-" for m in modes]
            o, st = r["overall"], r.get("overall_stratified") or {}
            rows.append(f"| {cmp.a} − {cmp.b} | {seed} | " + " | ".join(cells)
                        + f" | {signed(o['difference'])} ± {o['ci95']:.2f} | "
                        + (f"± {st['ci95']:.2f}" if st else "-") + f" | {format_p(o['p_value'])} |")
    return ("\n\nPer seed (each seed's paired mean over its tasks ± 1.96 sd / sqrt(n), pooled over modes "
            "and stratified by mode):\n\n" + "\n".join(rows))


def paired_section(c: CampaignRecords, setting: Setting, contrasts: list[Contrast]) -> str:
    """The headline paired table (across seeds where there are several), a sentence per
    contrast, and the per-seed table of the contrasts with several seeds. A contrast that
    rests on a run trained from uncommitted code or on two commits carries its marks."""
    modes: list[str] = []
    for cmp in contrasts:
        modes += [m for m in cmp.modes() if m not in modes]
    rows = [
        "| comparison | " + " | ".join(modes)
        + " | **overall** | stratified by mode | seeds | p | wins / losses / ties |",
        "|" + "---|" * (len(modes) + 6),
    ]
    sentences = []
    marked = False
    for cmp in contrasts:
        marks = contrast_marks(c, setting, cmp)
        marked = marked or bool(marks)
        label = f"{cmp.a} − {cmp.b}{marks}"
        rows.append(_contrast_row(cmp, label, modes))
        if cmp.per_seed:
            sentences.append(_contrast_sentence(cmp, label, modes))
    text = "\n".join(rows) + ("\n\n" + CODE_MARKS_NOTE if marked else "") + "\n\n" + "\n".join(sentences)
    return text + _per_seed_contrasts(contrasts, modes)


def accuracy_sd(c: CampaignRecords, setting: Setting, method: str) -> tuple[float, str] | None:
    """The standard deviation over training seeds of a method's overall accuracy in a
    setting, and whose it is: the method's own with two or more seeds, else that of the
    campaign's main method of the same kind (its modulation, or Multi-*), named; ``None``
    when neither has two seeds."""
    kinds = method_kinds(c)
    spec = next((m for m in c.spec.get("methods", []) if m["name"] == method), {})
    kind = "multi" if spec.get("multi") else spec.get("modulation", "none")
    for name in (method, kinds.get(kind)):
        runs = runs_of(c, setting, name) if name else {}
        if len(runs) > 1:
            return float(np.std([r.results["overall"]["accuracy"] for r in runs.values()], ddof=1)), name
    return None


def _yardstick(c: CampaignRecords, setting: Setting, a: str, b: str) -> tuple[float, str] | None:
    """``2 * sqrt(sd_a^2 + sd_b^2)`` (:func:`accuracy_sd`) and its cell text, or ``None``."""
    sds = [accuracy_sd(c, setting, m) for m in (a, b)]
    if any(sd is None for sd in sds):
        return None
    (sd_a, from_a), (sd_b, from_b) = sds
    parts = [f"{sd:.2f}" + (f" from {owner}" if owner != m else "") for (sd, owner), m in zip(sds, (a, b))]
    value = 2.0 * float(np.hypot(sd_a, sd_b))
    return value, f"{value:.2f} (sd {parts[0]}; {parts[1]})"


def ablation_section(c: CampaignRecords, setting: Setting) -> str:
    """The campaign's ablation rows (``[method, reference, what changes]``) present in
    ``setting``: each a paired contrast, judged against its own yardstick, twice the spread
    between seeds of a difference of these two methods (:func:`_yardstick`)."""
    rows_spec = [row for row in c.spec.get("ablation") or [] if len(row) == 3]
    methods = methods_in(c, setting)
    present = [row for row in rows_spec if row[0] in methods and row[1] in methods]
    if not present:
        return ""
    lines = [
        "#### Ablation: the published protocol, part by part",
        "",
        "Each row changes one thing against a reference run, paired on the identical test tasks. Its yardstick "
        "is twice the spread between training seeds of a difference of the two methods, 2 × √(sd_A² + sd_B²), "
        "each sd the standard deviation of that method's overall accuracy over its seeds; a method with one seed "
        "takes the sd of the campaign's main method of its kind (named in the row). By our rule a change counts "
        "(*beyond*) only when its difference exceeds the yardstick; *within* otherwise. The options are described "
        "in docs/modulation.md (\"The published protocol\").",
        "",
        "| what changes | comparison | **overall** | stratified by mode | seeds | yardstick | vs yardstick |",
        "|---|---|---|---|---|---|---|",
    ]
    for a, b, what in present:
        cmp = contrast(c, setting, a, b)
        if not cmp.per_seed:
            lines.append(f"| {what} | {a} − {b} | {cmp.error} | - | - | - | - |")
            continue
        mean, ci, over = cmp.headline()
        if over == "seeds":
            stratified = "-"
        else:
            st = next(iter(cmp.per_seed.values())).get("overall_stratified")
            stratified = f"± {st['ci95']:.2f}" if st else "-"
        yardstick = _yardstick(c, setting, a, b)
        against = "unknown" if yardstick is None else "beyond" if abs(mean) > yardstick[0] else "within"
        lines.append(f"| {what} | {a} − {b} | **{signed(mean)} ± {ci:.2f}** | {stratified} | "
                     f"{seeds_text(cmp.seeds)} | {'-' if yardstick is None else yardstick[1]} | {against} |")
    return "\n".join(lines)


def method_accuracy(c: CampaignRecords, setting: Setting, method: str, mode: str | None) -> tuple[float, float] | None:
    """A method's accuracy (overall or of ``mode``) in a setting: the mean over its seeds ±
    the t-interval over seeds, or with one seed its accuracy ± its CI over tasks."""
    runs = runs_of(c, setting, method)
    return accuracy_over_seeds([r.results["overall"] if mode is None else r.results["per_mode"].get(mode)
                                for r in runs.values()])


def accuracy_table(c: CampaignRecords, setting: Setting, shots: int) -> str:
    all_runs = [r for runs in setting.values() for r in runs]
    modes = modes_of(all_runs)
    paper_col = any(paper_value(c, m, shots) is not None for m in methods_in(c, setting))
    header = "| method | " + " | ".join(modes) + " | **overall** | seeds | tested |" + (" paper |" if paper_col else "")
    rows = [header, "|" + "---|" * (len(modes) + 4 + paper_col)]
    marked = False
    for method in methods_in(c, setting):
        runs = runs_of(c, setting, method)
        cells = []
        for m in modes:
            v = method_accuracy(c, setting, method, m)
            cells.append(f"{v[0]:.2f} ± {v[1]:.2f}" if v else "-")
        o = method_accuracy(c, setting, method, None)
        first = next(iter(runs.values()))
        tested = first.results.get("checkpoint", "last")
        its = first.results.get("checkpoint_iterations") or first.results.get("iterations", {})
        tested += " (" + ", ".join(f"{k}: {v}" if k != "all" else str(v) for k, v in its.items()) + ")"
        marks = runs_marks(c, runs.values())
        marked = marked or bool(marks)
        row = (f"| {method}{marks} | " + " | ".join(cells)
               + f" | **{o[0]:.2f} ± {o[1]:.2f}** | {seeds_text(runs)} | {tested} |")
        if paper_col:
            value = paper_value(c, method, shots)
            row += f" {value:.2f} |" if value is not None else " - |"
        rows.append(row)
    if marked:
        rows += ["", CODE_MARKS_NOTE]
    return "\n".join(rows)


def per_seed_accuracy_table(c: CampaignRecords, setting: Setting) -> str:
    """The accuracy of each seed of the methods with several seeds ("" when none has)."""
    all_runs = [r for runs in setting.values() for r in runs]
    modes = modes_of(all_runs)
    rows = ["| method | seed | " + " | ".join(modes) + " | **overall** |", "|" + "---|" * (len(modes) + 3)]
    for method in methods_in(c, setting):
        runs = runs_of(c, setting, method)
        if len(runs) < 2:
            continue
        for seed, run in runs.items():
            cells = [f"{run.results['per_mode'][m]['accuracy']:.2f} ± {run.results['per_mode'][m]['ci95']:.2f}"
                     if m in run.results["per_mode"] else "-" for m in modes]
            o = run.results["overall"]
            rows.append(f"| {method} | {seed} | " + " | ".join(cells) + f" | {o['accuracy']:.2f} ± {o['ci95']:.2f} |")
    return "\n".join(rows) if len(rows) > 2 else ""


def _count_text(entry: dict, official_per_class: int | None) -> str:
    """``"16 classes × 100 of 600 images each"``; ``"123 of 140 classes × 50 of 500 images
    each"`` where the mixture drops classes (the manifest's per-class range)."""
    used = entry.get("used") or {"classes": entry["classes"], "images": entry["images"]}
    if used["classes"] == 0:
        return "none"
    classes = (f"{used['classes']} of {entry['classes']} classes" if used["classes"] != entry["classes"]
               else f"{used['classes']} classes")
    per_class = entry.get("images_per_class") or {}
    lo, hi = per_class.get("min"), per_class.get("max")
    span = f"{lo}" if lo == hi else f"{lo}-{hi}"
    if official_per_class and lo == hi and lo != official_per_class:
        span += f" of {official_per_class}"
    return f"{classes} × {span} images each"


def _official(name: str, entry: dict) -> dict:
    """The official size of a dataset: from the record, else from the library's spec."""
    if entry.get("official"):
        return entry["official"]
    from kml.data.datasets import REAL_SPECS

    spec = REAL_SPECS.get(name)
    return {"classes": getattr(spec, "official_classes", None),
            "images_per_class": getattr(spec, "official_images_per_class", None)}


def data_section(c: CampaignRecords) -> str:
    """What data the campaign's runs used, from their records (``run_info.json``: ``data``)
    or, for runs that predate those, the campaign's ``data.json``."""
    recorded: dict[str, dict[str, set]] = {}
    source = None
    with_data = 0
    for run in c.runs:
        info_path = run.path / "run_info.json"
        info = json.loads(info_path.read_text()) if info_path.is_file() else {}
        if info.get("data"):
            with_data += 1
            source = source or info["data"]
            for name, entry in info["data"].items():
                recorded.setdefault(name, {"sha": set()})["sha"].add(entry.get("sha256"))
    datasets = source or (c.data or {}).get("datasets")
    if not datasets:
        return ("#### Data\n\nNo record of the prepared data: these runs predate per-run data records, and no "
                "`data.json` was written where they ran. The description above says what data they used.\n")
    lines = [
        "#### Data",
        "",
        "Classes and images per class of each split, as the prepared data's manifests record them "
        + ("(from the runs' own records, `run_info.json`)." if source else
           "(from `data.json`: the same datasets prepared by `kml-prepare` at this campaign's image size; these "
           "runs predate per-run data records)."),
        "",
        "| dataset | train | val | test | of the full dataset |",
        "|---|---|---|---|---|",
    ]
    for name, entry in datasets.items():
        official = _official(name, entry)
        cells = [_count_text(entry["splits"][s], official.get("images_per_class")) if s in entry["splits"] else "-"
                 for s in ("train", "val", "test")]
        total = sum(entry["splits"][s]["classes"] for s in entry["splits"])
        full = []
        if official.get("classes"):
            full.append(f"{total} of {official['classes']} classes")
        if official.get("images_per_class"):
            full.append(f"{official['images_per_class']} images per class")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {', '.join(full) or '-'} |")
    lines.append("")
    hashes = ", ".join(f"{name} `{entry['sha256'][:12]}`" for name, entry in datasets.items())
    if source:
        same = all(len(v["sha"]) == 1 for v in recorded.values())
        lines.append(f"{with_data} of {len(c.runs)} runs recorded their data; "
                     + ("all of them saw identical prepared arrays" if same else
                        "their prepared arrays differ: " + "; ".join(
                            f"{n}: {len(v['sha'])} versions" for n, v in recorded.items() if len(v["sha"]) > 1))
                     + f" (SHA-256 prefixes: {hashes}).")
        campaign_data = (c.data or {}).get("datasets") or {}
        if with_data < len(c.runs) and campaign_data:
            older = len(c.runs) - with_data
            differ = [n for n, e in campaign_data.items() if recorded.get(n, {}).get("sha") != {e.get("sha256")}]
            lines[-1] += (f" The other {older} predate per-run data records; the campaign's `data.json` (written by "
                          "the runner where it last ran, not by those runs) has "
                          + ("the same hashes." if not differ else f"other arrays for {', '.join(differ)}."))
    else:
        lines.append(f"SHA-256 prefixes of those prepared arrays: {hashes}.")
    lines.append("")
    return "\n".join(lines)


def transference_section(c: CampaignRecords, report: Path, figures_dir: Path) -> str:
    from kml.analysis.transference import transfer_shares
    from kml.analysis.transference_plots import plot_lr_histograms

    t = c.transference
    s = t["settings"]
    lines = [
        "### Transference",
        "",
        f"LR_(i→j) of {s['sources']} {s['source_split']} tasks of {s['source_mode']} (sources) onto "
        f"{s['targets']} {s['target_split']} task(s) of {s['target_mode']} (target), at iterations "
        f"{', '.join(map(str, s['checkpoints']))}. LR < 1 is positive transfer, > 1 negative. "
        f"Source step size α = {s['alpha']:g} and neutral band |LR − 1| ≤ {s['neutral']:g} are **our choices**: the "
        "paper states neither (see docs/transference.md for how they were chosen).",
        "",
        "| method | iteration | positive | neutral | negative | LR range (min - max) | mean LR |",
        "|---|---|---|---|---|---|---|",
    ]
    figures = []
    for run in t["runs"]:
        panels = []
        for entry in run["checkpoints"]:
            lr = np.asarray(entry["lr"], dtype=np.float64).reshape(-1)
            shares = transfer_shares(lr, s["neutral"])
            lines.append(
                f"| {run['label']} | {entry['iteration']} | {shares.positive:.1f}% | {shares.neutral:.1f}% | "
                f"{shares.negative:.1f}% | {lr.min():.3f} - {lr.max():.3f} | {lr.mean():.3f} |"
            )
            panels.append((f"{entry['iteration']} iterations", lr))
        path = figures_dir / f"results_{c.name}_transference_{run['run_id']}.png"
        plot_lr_histograms(panels, path, s["neutral"], 40,
                           f"{run['label']}: {s['source_mode']} → {s['target_mode']} (α={s['alpha']:g})")
        figures.append((run["label"], path))
    lines.append("")
    for label, path in figures:
        lines.append(f"![LR histograms of {label}]({relative_link(path, report)})")
        lines.append("")
    if t.get("alpha_sweep"):
        lines += [
            f"How the histograms depend on the source step alpha (iteration {t['alpha_sweep'][0]['iteration']}, "
            "same sources and target):",
            "",
            "| alpha | method | LR min - max | LR 5th - 95th percentile | positive / neutral / negative (%) |",
            "|---|---|---|---|---|",
        ]
        for e in t["alpha_sweep"]:
            lines.append(
                f"| {e['alpha']:g} | {e['label']} | {e['min']:.3f} - {e['max']:.3f} | {e['p5']:.3f} - {e['p95']:.3f} | "
                f"{e['positive']:.0f} / {e['neutral']:.0f} / {e['negative']:.0f} |"
            )
        lines.append("")
    machine = t.get("machine", {})
    lines.append(f"Computed in {t.get('seconds', 0):.0f} s on {machine_text(machine)}.")
    return "\n".join(lines)


def diagnostics_section(c: CampaignRecords) -> str:
    """The modulation diagnostics as a table: per method, checkpoint and mode, the feature
    norm, the task embedding's spread across tasks and, per modulated layer, what its
    modulation reports (``summary`` of its layer class): FiLM's scale (mean, minimum, share
    negative) or KML's |W_hat/W - 1| (and its spread across tasks)."""
    d = c.diagnostics
    layers = max([len(stats.get("blocks", [])) for entry in d["runs"] for stats in entry["modes"].values()] + [1])
    lines = [
        "### What the modulation does",
        "",
        f"On the first {d['runs'][0]['tasks_per_mode']} test tasks of each mode "
        "(`kml.analysis.diagnostics`, `tools/modulation_diagnostics.py`): the norm of the query "
        "features, the spread across tasks of the task embedding, and per block FiLM's scale "
        "`1 + dgamma(v)` as mean (min, share < 0) or KML's `|W_hat / W - 1|` as mean (spread "
        "across tasks). *zeroed biases*: the largest relative change of the logits when every conv "
        "bias and `db(v)` is set to zero.",
        "",
        "| method | iteration | mode | feature norm | v spread | "
        + " | ".join(f"block {i + 1}" for i in range(layers)) + " | zeroed biases |",
        "|---|---|---|---|---|" + "---|" * layers + "---|",
    ]
    for entry in d["runs"]:
        for mode, stats in entry["modes"].items():
            cells = [_block_cell(block) for block in stats.get("blocks", [])]
            cells += ["-"] * (layers - len(cells))
            spread = stats.get("embedding", {}).get("task_spread")
            lines.append(
                f"| {entry['label']} | {entry['iteration']} | {mode} | {stats['feature_norm']:.2f} | "
                + (f"{spread:.3f}" if spread is not None else "-") + " | " + " | ".join(cells)
                + f" | {entry['bias_zeroed_logit_change']:.1e} |"
            )
    return "\n".join(lines)


def _block_cell(block: dict) -> str:
    """A layer's diagnostics as its modulation summarises them (``-`` for a modulation that
    is not registered in this process)."""
    from kml.modulation import get_modulation, list_modulations

    kind = block.get("kind")
    layer = get_modulation(kind) if kind in list_modulations() else None
    return layer.summary(block) if layer is not None else "-"


def machine_text(machine: dict) -> str:
    if not machine:
        return "an unrecorded machine"
    if machine.get("gpu"):
        return f"{machine['gpu']} (torch {machine.get('torch')})"
    return (
        f"CPU {machine.get('cpu')} ({machine.get('cpu_count')} cores, "
        f"torch threads: {machine.get('torch_threads')}, torch {machine.get('torch')})"
    )


def budget_lines(c: CampaignRecords, budget: dict) -> list[str]:
    seconds = [r.get("seconds") for r in c.records.values() if r.get("seconds")]
    machines = {machine_text(r.get("machine", {})) for r in c.records.values() if r.get("machine")}
    lines = [
        "#### Budget, hardware and commands",
        "",
        f"- Budget per run: {budget.get('image_size')}x{budget.get('image_size')} images, "
        f"{budget.get('iterations')} iterations"
        + (f", meta-batch {budget['meta_batch_size']}"
           if budget.get("meta_batch_size") else ", the recipe's meta-batch")
        + f", {budget.get('eval_tasks_per_mode')} test tasks per mode"
        + (f", validation every {budget['val_every']} iterations on "
           f"{budget.get('val_tasks_per_mode')} val tasks per mode"
           if budget.get("val_every") else "")
        + f", tested checkpoint: {budget.get('eval_checkpoint', 'last')}.",
        f"- Hardware: {'; '.join(sorted(machines)) or 'unrecorded'}"
        + (f"; {sum(seconds) / 3600:.1f} h of training and testing recorded (the last session of each run)."
           if seconds else "."),
        f"- Regenerate or continue: `python scripts/reproduce.py campaign={c.name}` (add `data_root=<prepared data>`); "
        f"this report alone: `python scripts/reproduce.py campaign={c.name} report_only=true`.",
        "",
        "<details><summary>The command of every run</summary>",
        "",
    ]
    for run in c.runs:
        rec = c.records.get(run.path.name, {})
        if rec.get("command"):
            lines.append(f"- `{rec['run_id']}`: `{rec['command']}`")
    lines += ["", "</details>", ""]
    return lines
