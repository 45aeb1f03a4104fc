"""The fundraising goal the appeal shows progress towards ([donation] goal_amount,
goal_currency, goal_period): the gifts received in the period, summed when the issue is
rendered. A gift in another currency counts only through [donation] goal_rates; without
a rate it is shown beside the goal ("and EUR 120 more"), never silently added.

Amounts are exact: gifts are stored in minor units (øre, cents: a hundredth of the unit),
and rates and the goal are read as decimals."""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal

from babel.lists import format_list
from babel.numbers import format_currency, format_percent, get_decimal_symbol
from babel.support import Translations
from sqlalchemy import Engine, func, select

from mailer.gifts.parsed import exponent_of
from mailer.i18n import babel_locale, local_day, native_digits
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
    # the period as [donation] goal_period gives it, and its days, for readers' labels
    setting: str = "month"
    first: date | None = None
    last: date | None = None

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
    return goal_of(donation, sums, period, first, last)


def goal_of(
    donation: Donation,
    sums: dict[str, int],
    period: str,
    first: date | None = None,
    last: date | None = None,
) -> Goal:
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
    setting = donation.goal_period
    return Goal(currency, raised, goal, percent, period, tuple(others), setting, first, last)


@dataclass(frozen=True)
class GoalText:
    """The goal as a reader of one language reads it (partials/goal.html|txt)."""

    label: str  # "NOK 41,250 of NOK 60,000 this month", in native digits where used
    percent: str  # "71%", "71 %" (nb)
    more: str  # "and EUR 120 more", or ""
    bar: int


def money(amount: Decimal, currency: str, language: str) -> str:
    """An amount with its currency as `language` writes it (CLDR), without the zeros of
    a part of a unit when there is none ("NOK 1,500", "1 500 kr", "€12.50")."""
    locale = babel_locale(language)
    text = format_currency(amount, currency, locale=locale, numbering_system="default")
    if amount == amount.to_integral_value():
        point = re.escape(get_decimal_symbol(locale, numbering_system="default"))
        text = re.sub(point + r"0+(?!\d)", "", text)
    # CLDR's currency spacing, which Babel leaves out: "NOK 120", not "NOK120"
    text = re.sub(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])", "\xa0", text)
    return native_digits(text, language)


def goal_text(goal: Goal, translations: Translations, language: str) -> GoalText:
    """The goal's label in the reader's words, its amounts and days written their way;
    the whole units only, as `label` (progress is never overstated)."""
    t = translations

    def whole(amount: Decimal, currency: str) -> str:
        return money(amount.to_integral_value(rounding=ROUND_FLOOR), currency, language)

    values = {"raised": whole(goal.raised, goal.currency), "goal": whole(goal.goal, goal.currency)}
    if goal.setting == "month":
        label = t.gettext("%(raised)s of %(goal)s this month") % values
    elif goal.setting == "quarter":
        label = t.gettext("%(raised)s of %(goal)s this quarter") % values
    else:
        zone = zoneinfo.ZoneInfo("UTC")  # plain days: no time zone to move them by
        values["first"] = local_day(goal.first, language, zone)
        values["last"] = local_day(goal.last, language, zone)
        label = t.gettext("%(raised)s of %(goal)s from %(first)s to %(last)s") % values
    more = ""
    if goal.others:
        listed = [whole(other.amount, other.currency) for other in goal.others]
        amounts = format_list(listed, style="unit", locale=babel_locale(language))
        more = t.gettext("and %(amounts)s more") % {"amounts": amounts}
    locale = babel_locale(language)
    share = format_percent(Decimal(goal.percent) / 100, locale=locale, numbering_system="default")
    return GoalText(label, native_digits(share, language), more, goal.bar)
