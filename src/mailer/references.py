"""Each issue's reference: digits a reader types into a bank transfer or a Vipps message,
unique across years, and ending in a check digit (the Damm algorithm, python-stdnum),
which catches every single wrong digit and every two neighbours swapped: such a typo
matches no issue at all, never another one. The next step, attributing gifts, reads
references back with `parse_reference`. Readers are never told apart by it: every reader
of an issue gets the same one.

    article 4, brought in in 2026:   DMC-2640    (26, the article's id, the check digit)
    the digest of week 49 of 2026:   DMC-260497  (26, 0 and the week, the check digit)
    the welcome series of 2026:      DMC-260009  (26, 0 and week 00, the check digit)

An article's id never starts with 0, so a digest's "0" keeps the two kinds apart; an ISO
week is never 00, so the welcome mails' reference (welcome.py) is nobody else's."""

from __future__ import annotations

import re
from datetime import datetime

from stdnum import damm

# after the prefix: two digits of the year, the article's id or 0 and the week, the check
_BODY = re.compile(r"^[0-9]{2}([1-9][0-9]*|0[0-9]{2})[0-9]$")


def _with_check(prefix: str, body: str) -> str:
    reference = body + damm.calc_check_digit(body)
    return f"{prefix}-{reference}" if prefix else reference


def article_reference(prefix: str, article_id: int, brought_in: datetime) -> str:
    """The reference of an article's issue: the year it was brought in, and its id."""
    return _with_check(prefix, f"{brought_in.year % 100:02d}{article_id}")


def digest_reference(prefix: str, week: str) -> str:
    """The reference of a week's digest ("2026-W49")."""
    year, number = week.split("-W")
    return _with_check(prefix, f"{int(year) % 100:02d}0{int(number):02d}")


def welcome_reference(prefix: str, year: int) -> str:
    """The reference of the welcome mails of readers who confirmed in `year`."""
    return _with_check(prefix, f"{year % 100:02d}000")


def is_welcome_reference(reference: str, prefix: str) -> bool:
    """Whether a reference (as parse_reference gives it) is a welcome mail's."""
    body = reference.removeprefix(f"{prefix}-" if prefix else "")
    return len(body) == 6 and body[2:5] == "000"


def parse_reference(text: str, prefix: str) -> str | None:
    """The reference in `text` as a reader may have typed it (any case; spaces and a
    missing or extra dash forgiven), or None when it is not one of ours or its check
    digit does not match."""
    squeezed = re.sub(r"[\s-]+", "", text.upper())
    if not squeezed.startswith(prefix):
        return None
    body = squeezed.removeprefix(prefix)
    if not _BODY.match(body) or not damm.is_valid(body):
        return None
    return f"{prefix}-{body}" if prefix else body
