"""Counted links, at render time: the links an issue counts become
base_url/r/<issue reference>/<link id>, which `mailer serve` redirects to the real address
(kept in the issue's `issue_link` rows) and counts, per issue and link, never per reader.

[tracking] count_clicks = "appeal" counts the donation block's links (the donate page,
"donate"; the Vipps link, "vipps"); "all" every other http(s) link of the issue too,
numbered in order of appearance, the HTML and the text part alike; "off" none. The
per-recipient links (unsubscribe, preferences) are placeholders, never http(s) at render
time, so they are never counted; nor is mailto:. The QR codes keep the direct links
(the block's codes are made before its links are replaced)."""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from sqlalchemy import Connection, Engine, delete, insert, select

from mailer.donation import DonationBlock
from mailer.links import CLICK_PATH, click_url, prefix
from mailer.models import ISSUE_LINKS


class CountClicks(StrEnum):
    APPEAL = "appeal"
    ALL = "all"
    OFF = "off"


@dataclass(frozen=True)
class CountedLink:
    """A link the issue carries through base_url/r/<reference>/<link_id>: where it leads."""

    link_id: str
    url: str
    appeal: bool  # one of the donation block's


# An href attribute inside a tag: css-inline's serialiser (html5ever's) writes every
# attribute in double quotes and escapes '"' within, and "<" in text, so text or an
# attribute's value that merely looks like one never matches. Outlook's <v:roundrect
# href> in a conditional comment matches too.
_HREF = re.compile(r'(<[A-Za-z][^<>]*?\shref=")([^"]*)(")')
# A URL in the text part; what ends a sentence around it is tried off it (below).
_TEXT_URL = re.compile(r"https?://[^\s<>\"]+")
_TRAILING = ".,;:!?)]}'*"


@dataclass
class LinkCounter:
    """One issue's counted links as they are made: the appeal's, then (with "all") the
    rest, one id per distinct address."""

    mode: CountClicks
    base_url: str
    reference: str
    links: list[CountedLink]
    # the ids the issue gave its other links already, by address: another edition of it
    # keeps them, so one id leads to one address in every language
    counted: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def for_issue(
        cls, mode: str, base_url: str, reference: str, counted: Mapping[str, str] | None = None
    ) -> LinkCounter:
        # without a reference (or an address to count at) there is nothing to count under
        counting = CountClicks(mode) if reference and base_url else CountClicks.OFF
        return cls(counting, base_url, reference, [], counted or {})

    def appeal(self, block: DonationBlock) -> DonationBlock:
        """The block with its links counted (its QR codes still lead straight there)."""
        if self.mode == CountClicks.OFF:
            return block
        url = self._appeal_link("donate", block.url)
        vipps_url = self._appeal_link("vipps", block.vipps_url)
        return replace(block, url=url, vipps_url=vipps_url)

    def _appeal_link(self, link_id: str, target: str) -> str:
        if not target:
            return target
        self.links.append(CountedLink(link_id, target, appeal=True))
        return click_url(self.base_url, self.reference, link_id)

    def every_link(self, html_part: str, text_part: str) -> tuple[str, str]:
        """With "all": each http(s) link of the HTML part, and the same addresses in the
        text part, counted; the parts as they are otherwise."""
        if self.mode != CountClicks.ALL:
            return html_part, text_part
        counted = self.base_url + prefix(CLICK_PATH)
        ids = {**self.counted, **{link.url: link.link_id for link in self.links}}
        numbers = [int(i) for i in ids.values() if i.isdigit()]

        def href(match: re.Match[str]) -> str:
            target = html.unescape(match[2])
            scheme = target.partition(":")[0].lower()
            if scheme not in ("http", "https") or target.startswith(counted):
                return match[0]
            if target not in ids:
                numbers.append(1 + max(numbers, default=0))
                ids[target] = str(numbers[-1])
                self.links.append(CountedLink(ids[target], target, appeal=False))
            url = click_url(self.base_url, self.reference, ids[target])
            return match[1] + html.escape(url) + match[3]

        def text_url(match: re.Match[str]) -> str:
            found = candidate = match[0]
            while candidate:  # the address, or it without what ends the sentence
                if candidate in ids:
                    url = click_url(self.base_url, self.reference, ids[candidate])
                    return url + found[len(candidate) :]
                if candidate[-1] not in _TRAILING:
                    break
                candidate = candidate[:-1]
            return found

        return _HREF.sub(href, html_part), _TEXT_URL.sub(text_url, text_part)


# The counted links as the issue_link table keeps them, per issue.
def store_links(connection: Connection, issue_id: int, links: Sequence[CountedLink]) -> None:
    """The issue's counted links as rendered, in place of any it had (none has been
    followed yet: the issue has not gone out)."""
    connection.execute(delete(ISSUE_LINKS).where(ISSUE_LINKS.c.issue_id == issue_id))
    add_links(connection, issue_id, links)


def add_links(connection: Connection, issue_id: int, links: Sequence[CountedLink]) -> None:
    """Counted links the issue does not count yet (an edition's: the appeal's and those
    it shares with the issue's own edition are counted already)."""
    known = select(ISSUE_LINKS.c.link_id).where(ISSUE_LINKS.c.issue_id == issue_id)
    have = set(connection.execute(known).scalars())
    rows = [
        {"issue_id": issue_id, "link_id": link.link_id, "url": link.url,
         "appeal": link.appeal, "clicks": 0}
        for link in links if link.link_id not in have
    ]  # fmt: skip
    if rows:
        connection.execute(insert(ISSUE_LINKS), rows)


def counted_links(engine: Engine, issue_id: int) -> dict[str, str]:
    """The issue's counted links other than the appeal's: their ids by address."""
    k = ISSUE_LINKS.c
    query = select(k.url, k.link_id).where(k.issue_id == issue_id, k.appeal.is_(False))
    with engine.connect() as connection:
        return {url: link_id for url, link_id in connection.execute(query)}
