"""The fundraising goal the appeal shows progress towards ([donation] goal_amount,
goal_currency, goal_period): the gifts received in the period, summed when the issue is
rendered. A gift in another currency counts only through [donation] goal_rates; without
a rate it is shown beside the goal ("and EUR 120 more"), never silently added.

Amounts are exact: gifts are stored in minor units (øre, cents: a hundredth of the unit),
and rates and the goal are read as decimals."""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from sqlalchemy import Engine, func, select

from mailer.gifts.parsed import exponent_of
from mailer.models import GIFTS, utcnow
from mailer.sections_donation import Donation

BAR_MAX = 100  # the bar is full at the goal, however far past it the gifts go


@dataclass(frozen=True)
class Remainder:
    """Gifts in a currency without a rate to the goal's: reported, never added."""

    currency: str
    amount: Decimal

    @property
    def label(self) -> str:
        return f"{self.currency} {format_amount(self.amount)}"


@dataclass(frozen=True)
class Goal:
    """What the appeal's bar shows (templates/email/partials/goal.html|txt)."""

    currency: str
    raised: Decimal  # in the goal's currency, converted gifts included
    goal: Decimal
    percent: int  # of the goal raised, rounded down; may pass 100
    period: str  # "this month", "this quarter", "from 1 November to 31 December 2026"
    others: tuple[Remainder, ...] = ()  # in currencies without a rate, by currency

    @property
    def bar(self) -> int:
        """The filled share of the bar in percent, 0 to 100."""
        return min(self.percent, BAR_MAX)

    @property
    def label(self) -> str:
        """ "NOK 41 250 of 60 000 this month"."""
        raised, goal = format_amount(self.raised), format_amount(self.goal)
        return f"{self.currency} {raised} of {goal} {self.period}"

    @property
    def more(self) -> str:
        """ "and EUR 120 more" (gifts in currencies the goal cannot count), or ""."""
        if not self.others:
            return ""
        return "and " + ", ".join(other.label for other in self.others) + " more"


def format_amount(amount: Decimal) -> str:
    """Whole units grouped by thousands with spaces, as Norwegians write them ("41 250");
    a part of a unit is dropped, so progress is never overstated."""
    whole = int(amount.to_integral_value(rounding=ROUND_FLOOR))
    return f"{whole:,}".replace(",", " ")


def goal_period(setting: str, today: date) -> tuple[date, date, str]:
    """The first and last day (inclusive) of the goal's period around `today`, and how the
    label names it."""
    if setting == "month":
        first = today.replace(day=1)
        following = (first + timedelta(days=32)).replace(day=1)
        return first, following - timedelta(days=1), "this month"
    if setting == "quarter":
        start_month = (today.month - 1) // 3 * 3 + 1
        first = today.replace(month=start_month, day=1)
        following = (first + timedelta(days=95)).replace(day=1)
        return first, following - timedelta(days=1), "this quarter"
    start_text, _, end_text = setting.partition("/")
    first, last = date.fromisoformat(start_text), date.fromisoformat(end_text)
    same_year = first.year == last.year
    start = f"{first:%-d %B}" if same_year else f"{first:%-d %B %Y}"
    return first, last, f"from {start} to {last:%-d %B %Y}"


def current_goal(
    engine: Engine, donation: Donation, timezone: str, now: datetime | None = None
) -> Goal | None:
    """The goal as the gifts imported so far stand against it, or None when there is no
    goal ([donation] goal_amount = 0)."""
    if donation.goal_amount <= 0:
        return None
    today = (now or utcnow()).astimezone(zoneinfo.ZoneInfo(timezone)).date()
    first, last, period = goal_period(donation.goal_period, today)
    query = (
        select(GIFTS.c.currency, func.sum(GIFTS.c.amount_minor))
        .where(GIFTS.c.received_on >= first, GIFTS.c.received_on <= last)
        .group_by(GIFTS.c.currency)
        .order_by(GIFTS.c.currency)
    )
    with engine.connect() as connection:
        sums = {currency: int(total) for currency, total in connection.execute(query)}
    return goal_of(donation, sums, period)


def goal_of(donation: Donation, sums: dict[str, int], period: str) -> Goal:
    """The goal from the sums of the period's gifts per currency (minor units)."""
    currency = donation.goal_currency
    rates = {code.upper(): Decimal(str(rate)) for code, rate in donation.goal_rates.items()}
    raised, others = Decimal(0), []
    for code, minor in sorted(sums.items()):
        amount = Decimal(minor).scaleb(-exponent_of(code))  # the gift table's minor units
        if code == currency:
            raised += amount
        elif code in rates:
            raised += amount * rates[code]
        elif minor:
            others.append(Remainder(code, amount))
    goal = Decimal(str(donation.goal_amount))
    percent = int((raised * 100 / goal).to_integral_value(rounding=ROUND_FLOOR))
    return Goal(currency, raised, goal, percent, period, tuple(others))
