"""``kml-compare`` on runs with several training seeds: runs of one method are grouped
(per-seed rows and the mean over seeds with its t-interval, the rule of the results
report), no method is compared with itself, and the outputs go to a file path, by
default under ``outputs/compare/``. The runs are tiny hand-made run directories."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from fixtures_engine import run_script

from kml.analysis.comparison import paired_comparisons, read_run_record, write_comparison
from kml.analysis.seeds import student_t_quantile
from kml.errors import KmlError

MODES = ("glyphs", "shapes")
EVAL = {"split": "test", "seed": 7, "tasks_per_mode": 12, "ways": 5, "shots": 1, "queries": 3}


def fake_run(folder: Path, method: str, seed: int, skill: float) -> Path:
    """A run directory with ``results.json`` and ``task_accuracies.json``: 12 tasks per mode
    whose accuracies (multiples of 1/15) depend on the run's seed and ``skill``."""
    rng = np.random.default_rng([seed, int(100 * skill), len(method)])
    modes, per_mode, pooled = {}, {}, []
    for mode in MODES:
        accuracy = np.clip(np.round(15 * (skill + rng.normal(0, 0.15, 12))) / 15, 0, 1)
        modes[mode] = {"task_ids": list(range(12)), "accuracy": accuracy.tolist()}
        per_mode[mode] = {"accuracy": 100 * accuracy.mean(), "ci95": 100 * 1.96 * accuracy.std(ddof=1) / math.sqrt(12)}
        pooled += accuracy.tolist()
    pooled = np.asarray(pooled)
    results = {
        "method": method, "mode": "mix", "eval": EVAL, "per_mode": per_mode, "config": {"train": {"seed": seed}},
        "overall": {"accuracy": 100 * pooled.mean(), "ci95": 100 * 1.96 * pooled.std(ddof=1) / math.sqrt(24)},
    }
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    (folder / "task_accuracies.json").write_text(json.dumps({"method": method, "mode": "mix", "eval": EVAL,
                                                             "modes": modes}))
    return folder


def rows(text: str, label: str) -> list[list[str]]:
    """The cells of every table row of ``text`` whose first cell is ``label``."""
    out = []
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells[0] == label:
            out.append(cells)
    return out


def test_two_seeds_of_one_method_are_grouped_and_no_method_is_compared_with_itself(tmp_path):
    runs = tmp_path / "runs"
    kml = [fake_run(runs / f"kml_seed{s}", "MProtoNet+KML", s, 0.7) for s in (0, 1)]
    base = fake_run(runs / "protonet_seed0", "MProtoNet", 0, 0.6)
    text = write_comparison([f"{runs}/*"], tmp_path / "out" / "cmp.md", log=lambda *a: None)

    # one row per method; the two seeds as their mean +- the t-interval over seeds
    [row] = rows(text.split("\n\n")[0], "MProtoNet+KML")
    seeds = [read_run_record(path).results["overall"]["accuracy"] for path in kml]
    half = student_t_quantile(1) * np.std(seeds, ddof=1) / math.sqrt(2)
    assert row[-2] == f"{np.mean(seeds):.2f} +- {half:.2f}" and row[-1] == "0, 1"
    [row] = rows(text.split("\n\n")[0], "MProtoNet")
    assert row[-1] == "0" and row[-2].startswith(f"{read_run_record(base).results['overall']['accuracy']:.2f} +- ")
    # and each seed in the per-seed table
    per_seed = rows(text, "MProtoNet+KML")
    assert [r[1] for r in per_seed[1:3]] == ["0", "1"]

    # the baseline (the first method, MProtoNet+KML here) is never compared with itself:
    # its seed 1 is not "MProtoNet+KML - MProtoNet+KML"; MProtoNet pairs with its seed 0
    paired = json.loads((tmp_path / "out" / "cmp_paired.json").read_text())
    assert paired["baseline"]["method"] == "MProtoNet+KML" and paired["baseline"]["seeds"] == [0, 1]
    assert [c["method"] for c in paired["comparisons"]] == ["MProtoNet"]
    [only] = paired["comparisons"]
    assert only["seeds"] == [0] and only["run_dir"] == str(base) and "across_seeds" not in only
    [row] = [r for r in rows(text, "MProtoNet") if r[-4].startswith("**")]
    assert row[-3] == "0"
    a = json.loads((base / "task_accuracies.json").read_text())["modes"]
    b = json.loads((kml[0] / "task_accuracies.json").read_text())["modes"]
    diffs = [x - y for m in MODES for x, y in zip(a[m]["accuracy"], b[m]["accuracy"])]
    assert only["overall"]["difference"] == pytest.approx(100 * np.mean(diffs), rel=1e-12)
    assert "MProtoNet+KML - MProtoNet+KML" not in text and not rows(text, "MProtoNet+KML - MProtoNet+KML")
    assert len(json.loads((tmp_path / "out" / "cmp.json").read_text())) == 3  # one entry per run

    # with MProtoNet as the baseline, MProtoNet+KML's seed 1 has no partner and says so
    text = write_comparison([f"{runs}/*"], tmp_path / "out" / "cmp.md", baseline="MProtoNet", log=lambda *a: None)
    [row] = [r for r in rows(text, "MProtoNet+KML") if r[-4].startswith("**")]
    assert row[-3] == "0 (1 unpaired)"

    # a second seed of the other method: paired per seed, then across the two seeds
    second = fake_run(runs / "protonet_seed1", "MProtoNet", 1, 0.6)
    text = write_comparison([f"{runs}/*"], tmp_path / "out" / "cmp.md", baseline="MProtoNet", log=lambda *a: None)
    paired = json.loads((tmp_path / "out" / "cmp_paired.json").read_text())
    [cmp] = paired["comparisons"]
    assert cmp["method"] == "MProtoNet+KML" and cmp["seeds"] == [0, 1]
    assert cmp["run_dirs"] == {"0": str(kml[0]), "1": str(kml[1])}
    per_seed_means = [cmp["per_seed"][s]["overall"]["difference"] for s in ("0", "1")]
    for seed, (mine, theirs) in zip(("0", "1"), ((kml[0], base), (kml[1], second))):
        x = json.loads((mine / "task_accuracies.json").read_text())["modes"]
        y = json.loads((theirs / "task_accuracies.json").read_text())["modes"]
        expected = np.mean([p - q for m in MODES for p, q in zip(x[m]["accuracy"], y[m]["accuracy"])])
        assert cmp["per_seed"][seed]["overall"]["difference"] == pytest.approx(100 * expected, rel=1e-12)
    across = cmp["across_seeds"]["overall"]
    assert across["mean"] == pytest.approx(np.mean(per_seed_means), rel=1e-12)
    assert across["ci95"] == pytest.approx(12.706204736174705 * np.std(per_seed_means, ddof=1) / math.sqrt(2))
    paired_rows = [r for r in rows(text, "MProtoNet+KML") if len(r) == len(MODES) + 5]
    [headline] = [r for r in paired_rows if r[-4].startswith("**")]
    assert headline[-4] == f"**{across['mean']:+.2f} +- {across['ci95']:.2f}**" and headline[-3] == "0, 1"
    assert [r[1] for r in paired_rows if r is not headline] == ["0", "1"]  # the paired table per seed


def test_runs_sharing_a_seed_stay_apart_and_a_baseline_run_dir_names_its_method(tmp_path):
    runs = tmp_path / "runs"
    first = fake_run(runs / "a", "MAML", 0, 0.5)
    again = fake_run(runs / "b", "MAML", 0, 0.55)  # a rerun with the same seed: not a second seed
    other = fake_run(runs / "c", "ProtoNet", 3, 0.6)
    records = [read_run_record(path) for path in (first, again, other)]
    paired = paired_comparisons(records, baseline=str(other))
    assert paired["baseline"]["method"] == "ProtoNet"
    assert [c["method"] for c in paired["comparisons"]] == [f"MAML [{first}]", f"MAML [{again}]"]
    # one run each: paired on their tasks whatever their seeds, as before seeds were known
    assert all(c["seeds"] == [0] and c["baseline_seeds"] == [3] and "overall" in c for c in paired["comparisons"])


def test_the_outputs_go_to_a_new_folder_under_outputs_compare_by_default(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs / "a", "MAML", 0, 0.5)
    fake_run(runs / "b", "ProtoNet", 0, 0.6)
    work = tmp_path / "work"
    work.mkdir()
    proc = run_script("compare.py", f"run_dirs=[{runs}/*]", cwd=work)
    proc_again = run_script("compare.py", f"run_dirs=[{runs}/*]", cwd=work)
    written = sorted(work.glob("outputs/compare/*/comparison.md"))
    assert len(written) == 2 and written[0].parent != written[1].parent  # two runs, two folders
    assert sorted(p.name for p in written[0].parent.iterdir()) == [
        "comparison.json", "comparison.md", "comparison_paired.json"]
    assert sorted(p.name for p in work.iterdir()) == ["outputs"]  # nothing in the current folder
    assert str(written[0].relative_to(work)) in proc.stdout + proc_again.stdout
    with pytest.raises(KmlError, match=r"output=.* is a folder; pass a file path such as output=.*comparison.md"):
        write_comparison([f"{runs}/*"], work, log=lambda *a: None)
