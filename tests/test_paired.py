"""Paired statistics (kml.analysis.paired) against hand computations and reference values."""

from __future__ import annotations

import math
import statistics

import pytest

from kml.analysis.paired import PairingError, compare_task_records, paired_difference, student_t_two_sided_p


@pytest.mark.parametrize("t,df,p", [
    (2.228138852, 10, 0.05),      # two-sided 5% critical values of Student's t
    (12.70620474, 1, 0.05),
    (2.042272456, 30, 0.05),
    (3.169272667, 10, 0.01),
    (1.959963985, 10**7, 0.05),   # the normal limit
    (0.0, 5, 1.0),
])
def test_student_t_tail_matches_tabulated_critical_values(t, df, p):
    assert student_t_two_sided_p(t, df) == pytest.approx(p, rel=1e-6, abs=1e-12)
    assert student_t_two_sided_p(-t, df) == pytest.approx(p, rel=1e-6, abs=1e-12)


def test_paired_difference_by_hand():
    a = [0.8, 0.6, 1.0, 0.4, 0.6]
    b = [0.6, 0.6, 0.8, 0.2, 0.8]
    d = [x - y for x, y in zip(a, b)]  # 0.2, 0, 0.2, 0.2, -0.2
    mean, sd = statistics.fmean(d), statistics.stdev(d)
    result = paired_difference(a, b)
    assert result.difference == pytest.approx(100 * mean)
    assert result.std == pytest.approx(100 * sd)
    assert result.ci95 == pytest.approx(100 * 1.96 * sd / math.sqrt(5))
    t = mean / (sd / math.sqrt(5))  # 1.0
    assert t == pytest.approx(1.0)
    assert result.p_value == pytest.approx(0.3739009663, rel=1e-6)  # two-sided, t = 1, df = 4
    assert (result.wins, result.losses, result.ties, result.tasks) == (3, 1, 1, 5)
    same = paired_difference(a, a)
    assert same.difference == 0 and same.p_value == 1.0
    shifted = paired_difference([0.5, 0.6], [0.4, 0.5])  # identical differences: no variance
    assert shifted.difference == pytest.approx(10) and shifted.p_value == 0.0


def _records(method, accuracies, **eval_overrides):
    return {"method": method, "eval": {"split": "test", "seed": 1, "ways": 5, "shots": 1, "queries": 15,
                                       **eval_overrides},
            "modes": {mode: {"task_ids": list(range(len(acc))), "accuracy": acc} for mode, acc in accuracies.items()}}


def test_records_pair_by_task_id_per_mode_and_overall():
    a = _records("A", {"m1": [1.0, 0.5, 0.5], "m2": [0.2, 0.4]})
    b = _records("B", {"m1": [0.5, 0.5, 0.0], "m2": [0.2, 0.2], "m3": [0.1]})
    b["modes"]["m1"] = {"task_ids": [2, 0, 1], "accuracy": [0.0, 0.5, 0.5]}  # another order: paired by id
    out = compare_task_records(a, b)
    assert set(out["per_mode"]) == {"m1", "m2"}  # m3 is not in both
    assert out["per_mode"]["m1"]["difference"] == pytest.approx(100 * (0.5 + 0 + 0.5) / 3)
    assert out["overall"]["tasks"] == 5
    assert out["overall"]["difference"] == pytest.approx(100 * (0.5 + 0 + 0.5 + 0 + 0.2) / 5)
    with pytest.raises(PairingError, match=r"different tasks \(shots 1 vs 5\)"):
        compare_task_records(a, _records("C", {"m1": [0.5]}, shots=5))
