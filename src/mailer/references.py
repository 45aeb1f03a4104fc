"""Each issue's reference: short enough to type into a bank transfer or a Vipps message,
unique across years, and ending in a check character (ISO 7064 MOD 37-36, python-stdnum)
so that a mistyped one (a wrong character, two swapped) matches no issue at all rather
than another one. The next step, attributing gifts, reads references back with
`parse_reference`. Readers are never told apart by it: every reader of an issue gets
the same one.

    article 4, brought in in 2026:   DMC-264Y   (26, the article's id, a check character)
    the digest of week 49 of 2026:   DMC-26W49I (26, W and the week, a check character)
"""

from __future__ import annotations

import re
from datetime import datetime

from stdnum.iso7064 import mod_37_36

# after the prefix: two digits of the year, the week or the article's id, the check
_BODY = re.compile(r"^[0-9]{2}(W[0-9]{2}|[0-9]+)[0-9A-Z]$")


def _with_check(prefix: str, body: str) -> str:
    check = mod_37_36.calc_check_digit(prefix + body)
    return f"{prefix}-{body}{check}" if prefix else f"{body}{check}"


def article_reference(prefix: str, article_id: int, brought_in: datetime) -> str:
    """The reference of an article's issue: the year it was brought in, and its id."""
    return _with_check(prefix, f"{brought_in.year % 100:02d}{article_id}")


def digest_reference(prefix: str, week: str) -> str:
    """The reference of a week's digest ("2026-W49")."""
    year, number = week.split("-W")
    return _with_check(prefix, f"{int(year) % 100:02d}W{int(number):02d}")


def parse_reference(text: str, prefix: str) -> str | None:
    """The reference in `text` as a reader may have typed it (any case; spaces and a
    missing or extra dash forgiven), or None when it is not one of ours or its check
    character does not match."""
    squeezed = re.sub(r"[\s-]+", "", text.upper())
    if not squeezed.startswith(prefix):
        return None
    body = squeezed.removeprefix(prefix)
    if not _BODY.match(body) or not mod_37_36.is_valid(prefix + body):
        return None
    return f"{prefix}-{body}" if prefix else body
