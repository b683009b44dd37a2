"""Findings text (a campaign's ``notes.md``) never types a verdict word or a contrast's
figure: it writes ``{{verdict: A − B @ K-shot}}`` and ``{{diff: A − B @ K-shot}}``, which
:func:`fill_findings` replaces with the word and the figure the report computes from the
records (the verdict rule is :func:`kml.analysis.seeds.seed_verdict`), and
:func:`hand_written_verdicts` finds a verdict word typed by hand.
"""

from __future__ import annotations

import re
from typing import Callable

from kml.errors import KmlError

__all__ = ["PLACEHOLDER", "fill_findings", "hand_written_verdicts"]

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
