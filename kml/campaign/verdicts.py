"""The verdict rule of the results report, the Holm correction over its claims, and the
findings text's verdict words and figures filled in from the same contrasts.

The rule (stated above the claims table):

- a claim gets a verdict only when both methods have at least :data:`MIN_SEEDS` training
  seeds: **holds** when the Student-t interval over seeds of the per-seed paired
  differences lies above 0, **does not hold** when it lies below 0, **not established**
  otherwise;
- with fewer seeds the verdict is ``"one seed: no verdict"`` (``"two seeds: ..."``): the
  paired interval over test tasks is still shown, but it covers the test tasks, not
  training, and seeds move a contrast by more than that interval;
- beside each verdict, whether it survives a Holm correction over every claim with a
  verdict (family-wise error 0.05, the p-values of the one-sample t-tests over seeds).

Findings text (a campaign's ``notes.md``) never types a verdict word or a contrast's
figure: it writes ``{{verdict: A − B @ K-shot}}`` and ``{{diff: A − B @ K-shot}}``, which
:func:`fill_findings` replaces with the word and the figure the report computes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

from kml.analysis.seeds import across_seeds, verdict
from kml.errors import KmlError

__all__ = ["MIN_SEEDS", "SeedVerdict", "seed_verdict", "holm_survivors", "fill_findings", "hand_written_verdicts",
           "PLACEHOLDER", "RULE"]

#: training seeds of both methods a verdict needs
MIN_SEEDS = 3

_COUNTS = {1: "one seed", 2: "two seeds"}

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


@dataclass(frozen=True)
class SeedVerdict:
    """The verdict of a contrast from its per-seed paired differences.

    Attributes:
        word: ``holds``, ``does not hold``, ``not established`` or ``"<n> seed(s): no verdict"``.
        seeds: the number of training seeds both methods have.
        p_value: the two-sided one-sample t-test over seeds (``None`` under :data:`MIN_SEEDS`).
    """

    word: str
    seeds: int
    p_value: float | None

    @property
    def has_verdict(self) -> bool:
        return self.p_value is not None


def seed_verdict(per_seed: Sequence[float]) -> SeedVerdict:
    """:class:`SeedVerdict` of the per-seed paired mean differences of a contrast."""
    n = len(per_seed)
    if n < MIN_SEEDS:
        return SeedVerdict(f"{_COUNTS.get(n, f'{n} seeds')}: no verdict", n, None)
    s = across_seeds(per_seed)
    return SeedVerdict(verdict(s.low, s.high), n, s.p_value)


def holm_survivors(p_values: Sequence[float], alpha: float = 0.05) -> list[bool]:
    """Holm's step-down procedure: for each p-value (in the given order), whether its
    hypothesis is rejected at family-wise error ``alpha``: the ``i``-th smallest of ``m``
    p-values is compared with ``alpha / (m - i)`` (``i`` from 0), stopping at the first
    that is not below."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    survives = [False] * m
    for rank, index in enumerate(order):
        if p_values[index] > alpha / (m - rank):
            break
        survives[index] = True
    return survives


#: ``{{verdict: A − B @ 1-shot}}`` or ``{{diff: A − B @ 5-shot}}`` in findings text
PLACEHOLDER = re.compile(r"\{\{\s*(verdict|diff)\s*:\s*(.+?)\s+−\s+(.+?)\s*@\s*(\d+)-shot\s*\}\}")


def fill_findings(text: str, lookup: Callable[[str, str, str, int], str | None], where: str) -> str:
    """``text`` with every placeholder replaced by ``lookup(kind, a, b, shots)`` (``kind``
    ``"verdict"`` or ``"diff"``).

    Raises:
        KmlError: a placeholder names a contrast the records do not have (``where`` names
            the file), or a ``{{`` that is not a placeholder.
    """

    def replace(match: re.Match) -> str:
        kind, a, b, shots = match.group(1), match.group(2), match.group(3), int(match.group(4))
        value = lookup(kind, a, b, shots)
        if value is None:
            raise KmlError(f"{where}: {match.group(0)} names no contrast with records ({a} − {b} at {shots}-shot); "
                           "use the method names of the campaign and a shots setting it has")
        return value

    filled = PLACEHOLDER.sub(replace, text)
    if "{{" in filled:
        start = filled.index("{{")
        raise KmlError(f"{where}: {filled[start:start + 60]!r} is not a placeholder; write "
                       "{{verdict: A − B @ 1-shot}} or {{diff: A − B @ 1-shot}}")
    return filled


_VERDICT_WORDS = re.compile(r"\b(holds?|not\s+established)\b", re.IGNORECASE)


def hand_written_verdicts(text: str) -> list[str]:
    """The verdict words (``hold``, ``holds``, ``not established``, also across a line
    break) that ``text`` types outside its placeholders, each with the words around it."""
    flat = " ".join(PLACEHOLDER.sub("", text).split())
    return [flat[max(0, m.start() - 30):m.end() + 30] for m in _VERDICT_WORDS.finditer(flat)]
