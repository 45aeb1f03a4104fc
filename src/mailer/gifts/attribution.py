"""Finding an issue's reference in what a giver typed: "DMC-2640", "dmc 2640",
"DMC2640", "Gave DMC-26 40 takk": any case, spaces and hyphens ignored, on word
boundaries, and only with its check digit right (references.parse_reference), so a
mistyped reference is never another issue's."""

from __future__ import annotations

import re
from functools import cache

from mailer.references import parse_reference

_GAP = r"[\s\-]*"


@cache
def _pattern(prefix: str) -> re.Pattern[str]:
    letters = _GAP.join(re.escape(char) for char in prefix)
    start = letters + _GAP if prefix else ""
    return re.compile(rf"(?<![0-9A-Za-z]){start}[0-9](?:{_GAP}[0-9])*(?![0-9A-Za-z])", re.I)


def references_in(text: str, prefix: str) -> list[str]:
    """Every valid reference in `text`, in order; where digits run on ("DMC-2640 500"),
    each reading that ends at a gap is tried, the longest first."""
    found: list[str] = []
    for match in _pattern(prefix).finditer(text):
        for candidate in _readings(match.group()):
            reference = parse_reference(candidate, prefix)
            if reference and reference not in found:
                found.append(reference)
    return found


def _readings(run: str) -> list[str]:
    ends = [gap.start() for gap in re.finditer(r"(?<=[0-9])[\s\-]+(?=[0-9])", run)]
    return [run, *(run[:end] for end in reversed(ends))]
