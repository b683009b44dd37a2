"""The report's verdict rule: no verdict under three training seeds, the Holm correction
over the claims, and findings text whose verdict words and figures are filled in from the
records, never typed."""

from __future__ import annotations

from pathlib import Path

import pytest

from kml.analysis.seeds import across_seeds, holm_survivors, seed_verdict
from kml.campaign.findings import fill_findings, hand_written_verdicts
from kml.errors import KmlError

RESULTS = Path(__file__).resolve().parents[1] / "results"


def test_one_or_two_seeds_never_get_a_verdict():
    for values, word in (([+3.0], "one seed: no verdict"), ([+3.0, +3.1], "two seeds: no verdict")):
        judged = seed_verdict(values)
        assert judged.word == word and not judged.has_verdict and judged.p_value is None


@pytest.mark.parametrize("values,word", [
    ([1.0, 1.2, 0.9], "holds"),
    ([-1.0, -1.2, -0.9], "does not hold"),
    ([1.0, -0.5, 0.3], "not established"),
])
def test_three_seeds_get_the_verdict_of_their_t_interval(values, word):
    judged = seed_verdict(values)
    assert judged.word == word and judged.seeds == 3
    assert judged.p_value == pytest.approx(across_seeds(values).p_value, rel=1e-12)


def test_holm_against_a_hand_computation():
    # sorted: 0.005 <= 0.05/4, 0.010 <= 0.05/3, 0.030 > 0.05/2: stop; 0.040 is not tested
    assert holm_survivors([0.010, 0.040, 0.030, 0.005]) == [True, False, False, True]
    assert holm_survivors([0.001, 0.2]) == [True, False]  # 0.001 <= 0.025, 0.2 > 0.05
    assert holm_survivors([0.03, 0.04]) == [False, False]  # 0.03 > 0.025: nothing survives
    assert holm_survivors([]) == []


def test_findings_placeholders_are_filled_and_a_wrong_one_is_refused():
    def lookup(kind, a, b, shots):
        if (a, b, shots) != ("KML", "none", 1):
            return None
        return "holds" if kind == "verdict" else "+1.00 ± 0.50 (3 seeds)"

    text = "KML − none {{diff: KML − none @ 1-shot}}: {{verdict: KML − none @ 1-shot}}."
    assert fill_findings(text, lookup, "notes.md") == "KML − none +1.00 ± 0.50 (3 seeds): holds."
    with pytest.raises(KmlError, match=r"notes.md: \{\{verdict: KML − FiLM @ 1-shot\}\} names no contrast"):
        fill_findings("{{verdict: KML − FiLM @ 1-shot}}", lookup, "notes.md")
    with pytest.raises(KmlError, match="is not a placeholder"):
        fill_findings("{{verdict KML}}", lookup, "notes.md")


def test_no_committed_findings_text_types_a_verdict_word():
    assert hand_written_verdicts("the claim holds here") == ["the claim holds here"]
    assert hand_written_verdicts('by our rule it is "not\n  established": the seeds') != []
    assert hand_written_verdicts("FiLM does not hold up") and hand_written_verdicts("not established yet")
    assert hand_written_verdicts("it {{verdict: A − B @ 1-shot}} here") == []
    for notes in sorted(RESULTS.glob("*/notes.md")):
        assert hand_written_verdicts(notes.read_text()) == [], f"{notes.parent.name}/notes.md types a verdict word"
