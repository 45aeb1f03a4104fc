"""What the gifts add up to: per issue (with its appeal links' clicks beside them), per
month, those marked with the welcome mails' reference (store.py keeps a reference with
no issue only for those), and those attributed to nothing. Sums are per currency, in
minor units, exact."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from sqlalchemy import Engine, func, select

from mailer.models import GIFTS, ISSUE_LINKS, ISSUES
from mailer.report import LinkClicks, link_clicks

g, i, k = GIFTS.c, ISSUES.c, ISSUE_LINKS.c


@dataclass
class Sums:
    gifts: int = 0
    amounts: dict[str, int] = field(default_factory=dict)  # currency -> minor units

    def add(self, count: int, currency: str, amount: int) -> None:
        self.gifts += count
        self.amounts[currency] = self.amounts.get(currency, 0) + amount


@dataclass
class IssueGifts:
    issue_id: int
    reference: str
    subject: str
    sums: Sums
    clicks: tuple[LinkClicks, ...]  # the appeal's links


@dataclass
class GiftTally:
    issues: list[IssueGifts]
    months: dict[str, Sums]  # "2026-11" -> sums, in order
    unattributed: Sums
    welcome: Sums = field(default_factory=Sums)  # marked with the welcome mails' reference


def tally(engine: Engine) -> GiftTally:
    with engine.connect() as connection:
        per_issue = connection.execute(
            select(
                g.issue_id,
                g.reference.is_not(None),
                g.currency,
                func.count(),
                func.sum(g.amount_minor),
            )
            .group_by(g.issue_id, g.reference.is_not(None), g.currency)
            .order_by(g.currency)
        ).all()
        per_day = connection.execute(
            select(g.received_on, g.currency, func.count(), func.sum(g.amount_minor))
            .group_by(g.received_on, g.currency)
            .order_by(g.received_on, g.currency)
        ).all()
        clicked = set(
            connection.execute(select(k.issue_id).where(k.appeal, k.clicks > 0)).scalars()
        )
        issues = {
            row.id: (row.reference or "", row.subject)
            for row in connection.execute(select(i.id, i.reference, i.subject))
        }
    sums: dict[int, Sums] = defaultdict(Sums)
    unattributed, welcome = Sums(), Sums()
    for issue_id, marked, currency, count, amount in per_issue:
        to = sums[issue_id] if issue_id is not None else welcome if marked else unattributed
        to.add(count, currency, int(amount))
    months: dict[str, Sums] = defaultdict(Sums)
    for day, currency, count, amount in per_day:
        months[f"{day:%Y-%m}"].add(count, currency, int(amount))
    shown = sorted((set(sums) | clicked) & set(issues))
    return GiftTally(
        [_issue(engine, n, issues[n], sums.get(n, Sums())) for n in shown],
        dict(months),
        unattributed,
        welcome,
    )


def _issue(engine: Engine, issue_id: int, shown: tuple[str, str], sums: Sums) -> IssueGifts:
    clicks = tuple(link for link in link_clicks(engine, issue_id) if link.appeal)
    return IssueGifts(issue_id, *shown, sums, clicks)
