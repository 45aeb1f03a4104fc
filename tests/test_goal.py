"""The goal the appeal shows progress towards: the gifts received in the period (in the
publication's time zone), summed exactly when the issue is rendered; gifts in another
currency counted only through [donation] goal_rates, others reported beside the goal;
the bar drawn as a two-cell table, laid out by a real browser at 600 and 375 px."""

from __future__ import annotations

import json
import re
import shutil
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from sqlalchemy import Engine

from mailer.db import open_database
from mailer.goal import current_goal, goal_period
from mailer.messages import preview
from mailer.models import GIFTS, utcnow
from mailer.render import RenderedIssue
from mailer.settings import Settings
from mailer.testing import make_settings, new_issue

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
browser_only = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
CANIEMAIL = json.loads((Path(__file__).parent / "data" / "caniemail-css.json").read_text())

GOAL = {"goal_amount": 60000, "goal_currency": "NOK", "goal_rates": {"EUR": 11.5}}


def give(engine: Engine, received_on: date, amount_minor: int, currency: str = "NOK") -> None:
    with engine.begin() as connection:
        count = connection.execute(GIFTS.select()).fetchall()
        connection.execute(
            GIFTS.insert().values(
                source="csv",
                source_key=f"test:{len(count)}",
                received_on=received_on,
                amount_minor=amount_minor,
                currency=currency,
                remittance="",
                imported_at=utcnow(),
            )
        )


@pytest.fixture
def goal_settings(settings: Settings) -> Settings:
    return settings.replace(donation={**settings.donation.model_dump(), **GOAL})


def test_the_periods_are_the_calendar_month_the_quarter_or_the_dates_given():
    assert goal_period("month", date(2026, 12, 15)) == (
        date(2026, 12, 1),
        date(2026, 12, 31),
        "this month",
    )
    assert goal_period("month", date(2028, 2, 29))[:2] == (date(2028, 2, 1), date(2028, 2, 29))
    assert goal_period("quarter", date(2026, 11, 30)) == (
        date(2026, 10, 1),
        date(2026, 12, 31),
        "this quarter",
    )
    assert goal_period("quarter", date(2026, 2, 1))[:2] == (date(2026, 1, 1), date(2026, 3, 31))
    assert goal_period("2026-11-01/2027-01-31", date(2026, 12, 1)) == (
        date(2026, 11, 1),
        date(2027, 1, 31),
        "from 1 November 2026 to 31 January 2027",
    )


def test_the_gifts_of_the_month_count_exactly_and_other_currencies_only_through_a_rate(
    engine, goal_settings
):
    # 00:30 on 1 December in Oslo: December's gifts count, November's do not
    now = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)
    give(engine, date(2026, 12, 1), 4_000_050)  # NOK 40 000.50
    give(engine, date(2026, 12, 1), 124_950)  # NOK 1 249.50
    give(engine, date(2026, 12, 1), 10_000, "EUR")  # EUR 100 = NOK 1 150 at 11.5
    give(engine, date(2026, 12, 1), 50_000, "SEK")  # no rate: beside the goal
    give(engine, date(2026, 11, 30), 999_900)  # last month's
    goal = current_goal(engine, goal_settings.donation, "Europe/Oslo", now)
    assert goal is not None
    assert goal.raised == Decimal("42400.00")
    assert (goal.percent, goal.bar) == (70, 70)  # 70.66...: never rounded up
    assert goal.label == "NOK 42 400 of 60 000 this month"
    assert goal.more == "and SEK 500 more"
    # the same moment in UTC's own calendar would still be November
    in_utc = current_goal(engine, goal_settings.donation, "UTC", now)
    assert in_utc is not None and in_utc.raised == Decimal("9999.00") and in_utc.more == ""


def test_past_the_goal_the_bar_is_full_and_the_label_says_how_far(engine, goal_settings):
    give(engine, date.today(), 9_000_000)
    goal = current_goal(engine, goal_settings.donation, "UTC")
    assert goal is not None
    assert (goal.percent, goal.bar) == (150, 100)
    assert goal.label.startswith("NOK 90 000 of 60 000")


def test_without_a_goal_amount_there_is_no_goal(engine, settings):
    give(engine, date.today(), 100)
    assert current_goal(engine, settings.donation, "UTC") is None


def rendered_with_goal(engine: Engine, settings: Settings, tmp_path: Path) -> Any:
    today = utcnow().date()
    give(engine, today, 4_124_999)  # NOK 41 249.99: shown as 41 249
    give(engine, today, 12_000, "EUR")  # NOK 1 380
    give(engine, today, 12_000, "USD")
    return new_issue(engine, settings, tmp_path)


def test_the_issue_shows_the_goal_in_the_appeal_in_both_parts(engine, goal_settings, tmp_path):
    settings = goal_settings.replace(publication={"timezone": "UTC"})
    issue = rendered_with_goal(engine, settings, tmp_path)
    # the amounts as CLDR writes them in English, the code held to its number
    label = "NOK 42,629 of NOK 60,000 this month (71%), and US$120 more"
    assert label.replace("NOK ", "NOK\xa0") in issue.text
    lines = issue.text.replace("\xa0", " ").splitlines()
    assert lines.index(label) < lines.index(f"Mark your transfer: {issue.reference}")
    doc = lxml.html.fromstring(issue.html)
    (block,) = doc.xpath("//table[contains(@class, 'donation')]")
    (shown,) = block.xpath(".//p[contains(@class, 'goal-label')]")
    assert " ".join(shown.text_content().split()) == label
    (bar,) = block.xpath(".//table[contains(@class, 'goal-bar')]")
    assert bar.get("role") == "presentation"
    cells = [(td.get("class"), td.get("width"), td.get("bgcolor")) for td in bar.iter("td")]
    assert cells == [("goal-raised", "71%", "#1d4f73"), ("goal-rest", "29%", "#e7dcc2")]
    # every CSS property of the goal works in the clients readers use (tests/test_render.py)
    styles = " ".join(e.get("style", "") for e in [shown, bar, *bar.iter("td")])
    for prop in set(re.findall(r"(?:^|[;\s])([a-z-]+)\s*:", styles)) - {"mso-line-height-rule"}:
        support = CANIEMAIL["features"].get(f"css-{prop}", {})
        for family in ("gmail", "apple-mail", "outlook"):
            levels = [str(level) for level in support.get(family, {}).values()]
            assert not any(level.startswith("n") for level in levels), (prop, family)


def test_without_a_goal_the_appeal_has_no_bar(engine, settings, tmp_path):
    give(engine, utcnow().date(), 100_000)
    issue = new_issue(engine, settings, tmp_path)
    assert "goal-bar" not in issue.html
    assert " of 0 " not in issue.text


def test_the_desks_preview_shows_the_goal_as_the_gifts_stand_now(engine, goal_settings):
    from mailer.articles import ingest_file
    from mailer.demo import SAMPLE_ARTICLE
    from mailer.desk_sending import send_page

    settings = goal_settings.replace(publication={"timezone": "UTC"})
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    assert article.id is not None
    give(engine, utcnow().date(), 1_500_000)
    page = send_page(engine, settings, article.id)
    assert page is not None and "NOK\xa015,000 of NOK\xa060,000 this month (25%)" in page.text
    give(engine, utcnow().date(), 1_500_000)
    page = send_page(engine, settings, article.id)
    assert page is not None and "NOK\xa030,000 of NOK\xa060,000 this month (50%)" in page.text
    assert 'width="50%"' in page.html


# The bar and its label as a browser lays them out.
MEASURE = """() => {
  const bar = document.querySelector('table.goal-bar');
  const raised = bar.querySelector('td.goal-raised');
  const width = document.documentElement.clientWidth;
  return {
    scroll: document.documentElement.scrollWidth, viewport: width,
    bar: bar.getBoundingClientRect().width, raised: raised.getBoundingClientRect().width,
    height: raised.getBoundingClientRect().height,
    label: document.querySelector('p.goal-label').innerText,
  };
}"""


@browser_only
@pytest.mark.parametrize("width", [600, 375])
def test_the_filled_part_of_the_bar_is_the_share_raised(browser, tmp_path, width):
    settings = make_settings(tmp_path, donation=GOAL, publication={"timezone": "UTC"})
    engine = open_database(settings.database.url)
    try:
        issue = rendered_with_goal(engine, settings, tmp_path)
    finally:
        engine.dispose()
    html = preview(settings, RenderedIssue(issue.subject, "", issue.html, issue.text))
    page = browser.new_page(viewport={"width": width, "height": 900})
    try:
        page.set_content(html, wait_until="load")
        shown: dict[str, Any] = page.evaluate(MEASURE)
    finally:
        page.close()
    assert shown["scroll"] <= shown["viewport"], "no sideways scrolling"
    assert shown["bar"] > width / 2, "the bar runs across the block"
    assert shown["raised"] == pytest.approx(shown["bar"] * 0.71, abs=1.5)
    assert 10 <= shown["height"] <= 14, "a bar, not a line of text"
    assert "NOK 42,629 of NOK 60,000 this month (71%)" in shown["label"].replace("\xa0", " ")
