"""Statistics over training seeds (kml.analysis.seeds) against hand computations."""

import math

import numpy as np
import pytest

from kml.analysis.paired import compare_task_records
from kml.analysis.seeds import across_seeds, student_t_quantile, verdict


def test_t_quantiles_match_the_tables():
    # Student's t, two-sided 95 %: 12.706 (1 df), 4.303 (2), 2.776 (4), 2.228 (10); 1.960 in the limit
    for df, expected in ((1, 12.7062), (2, 4.3027), (4, 2.7764), (10, 2.2281), (1e7, 1.9600)):
        assert student_t_quantile(df) == pytest.approx(expected, abs=1e-4)


def test_across_seeds_is_the_mean_with_a_t_interval_over_seeds():
    values = [0.67, 0.21, 1.12]
    s = across_seeds(values)
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    assert s.mean == pytest.approx(mean) and s.sd == pytest.approx(sd)
    assert s.ci95 == pytest.approx(4.302652729749464 * sd / math.sqrt(3), rel=1e-9)
    assert s.seeds == 3 and s.values == tuple(values)
    # the one-sample t-test: t = mean / (sd / sqrt(3)) = 2.53 with 2 df gives p = 0.127
    assert s.p_value == pytest.approx(0.1274, abs=1e-3)
    one = across_seeds([0.5])
    assert one.mean == 0.5 and math.isnan(one.ci95)


def test_verdicts_follow_the_stated_rule():
    assert verdict(0.1, 0.9) == "holds"
    assert verdict(-0.9, -0.1) == "does not hold"
    assert verdict(-0.1, 0.9) == "not established"


def test_the_stratified_interval_treats_each_mode_as_a_stratum():
    rng = np.random.default_rng(0)
    easy_a, easy_b = rng.uniform(0.8, 1.0, 200), rng.uniform(0.8, 1.0, 200)
    hard_a, hard_b = rng.uniform(0.1, 0.6, 200), rng.uniform(0.1, 0.6, 200)

    def record(method, a, b):
        return {"method": method, "eval": {"split": "test", "seed": 1, "ways": 5, "shots": 1, "queries": 15},
                "modes": {"easy": {"task_ids": list(range(200)), "accuracy": list(a)},
                          "hard": {"task_ids": list(range(200)), "accuracy": list(b)}}}

    cmp = compare_task_records(record("a", easy_a, hard_a), record("b", easy_b, hard_b))
    d_easy, d_hard = easy_a - easy_b, hard_a - hard_b
    expected = 100 * 1.96 * math.sqrt(d_easy.var(ddof=1) / 200 + d_hard.var(ddof=1) / 200) / 2
    assert cmp["overall_stratified"]["ci95"] == pytest.approx(expected, rel=1e-12)
    assert cmp["overall_stratified"]["difference"] == pytest.approx(cmp["overall"]["difference"], rel=1e-12)


def test_a_contrast_with_a_mode_some_seeds_lack_reports_what_it_has():
    from kml.analysis.seeds import Contrast

    def cmp(overall, modes):
        entry = lambda d: {"difference": d, "ci95": 0.5}  # noqa: E731
        return {"overall": entry(overall), "per_mode": {m: entry(d) for m, d in modes.items()}}

    c = Contrast("a", "b", {0: cmp(1.0, {"x": 1.0, "y": 2.0}), 1: cmp(2.0, {"x": 3.0}), 2: cmp(3.0, {"x": 2.0})})
    mean, ci, over = c.headline()
    assert (mean, over) == (2.0, "seeds") and ci == pytest.approx(4.302652729749464 / math.sqrt(3))
    assert c.headline("x")[:1] == (2.0,) and c.headline("x")[2] == "seeds"
    assert c.headline("y") == (2.0, 0.5, "tasks")  # one seed has it: its CI over tasks
    assert c.headline("z") is None
    assert set(c.as_dict()["across_seeds"]["per_mode"]) == {"x"}
