"""The languages a reader reads, as they come in (the sign-up form, preferences,
`subscribers add --language`, a CSV import's `language` column) and as they are stored
(`subscriber.languages`: "fa-AF,en", their own first; NULL: the publication's language
alone). Each must be one the publication publishes in, spelt as its config spells it."""

from __future__ import annotations

from collections.abc import Iterable

from mailer.errors import SubscriberError
from mailer.i18n import parse_languages, supported


def checked_languages(value: str | Iterable[str] | None, offered: tuple[str, ...]) -> str | None:
    """`value` ("fa-AF, en"; its first is the reader's own) as stored: each tag one of
    `offered` (the publication's languages, its own first), each once; None for nothing
    given or the publication's language alone. SubscriberError names a tag that is not
    one, or one the publication does not publish in."""
    try:
        tags = parse_languages(value or ())
    except ValueError as exc:
        raise SubscriberError(f"{exc}; use one of {', '.join(offered)}") from None
    unknown = [tag for tag in tags if supported(tag, offered) is None]
    if unknown:
        raise SubscriberError(
            f"the publication does not publish in {', '.join(unknown)}; "
            f"use one or more of {', '.join(offered)} (the reader's own first)"
        )
    chosen = tuple(dict.fromkeys(supported(tag, offered) or tag for tag in tags))
    return None if chosen in ((), offered[:1]) else ",".join(chosen)


class Keep:
    """A choice a page did not offer (subscribers.update_preferences): left as it is."""


KEEP = Keep()
