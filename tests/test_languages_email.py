"""Every email in the reader's own language (issue 17): an issue and a digest rendered for
each shipped language and sent through a real SMTP server, checked as received: the
html's lang and dir, no English chrome left, dates and amounts as CLDR writes them in
that language, the appeal in it (config/mailer.toml's [donation.languages.X]), the
payment details unchanged; the confirmation and the welcome in Dari for a reader who
reads Dari first; and the Dari email laid out mirrored at a phone's width."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import lxml.html
import pytest
from babel.messages.pofile import read_po
from sqlalchemy import Engine, update

from mailer import i18n
from mailer.delivery import send_test_copy
from mailer.donation import appeal_language_warning
from mailer.gift_thanks import ThankedGift, render_gift_thanks
from mailer.goal import goal_of
from mailer.messages import preview
from mailer.models import SUBSCRIBERS, Article, MailKind, queued_mail, utcnow
from mailer.render import RenderedIssue, render_article_issue, render_digest_issue, translator
from mailer.settings import Settings
from mailer.subscribers import add_subscriber
from mailer.testing import RecordingHandler, make_settings, run_mailer, smtp_server
from mailer.transactional import queue_confirmation, send_queued

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ("en", "nb", "fa-AF", "ps")
SQLITE = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
PUBLISHED = datetime(2025, 10, 7, 23, 30, tzinfo=UTC)  # 8 October in Oslo
# the goal's NOK 41,250 raised, as each language writes it (CLDR, native digits)
RAISED = {"en": "NOK 41,250", "nb": "41 250 kr", "fa-AF": "NOK ۴۱٬۲۵۰", "ps": "NOK ۴۱٬۲۵۰"}
# the digest's week, both ends in the order of the language's long date
PERIOD = {
    "en": "6 October – 12 October 2025",
    "nb": "6. oktober – 12. oktober 2025",
    "fa-AF": "۶ اکتوبر – ۱۲ اکتوبر ۲۰۲۵",
    "ps": "۶ اکتوبر – ۱۲ اکتوبر ۲۰۲۵",
}
PAYMENT = ("0530 2294668", "NO15 0530 2294 668", "DNBANOKKXXX", "557320")


def _english_chrome() -> set[str]:
    """The words of every message of the email catalog, its placeholders taken out: the
    pieces of four letters or more an English email shows around its values."""
    with (ROOT / "locale" / "email.pot").open("rb") as handle:
        catalog = read_po(handle)
    pieces = set()
    for message in catalog:
        for msgid in (message.id,) if isinstance(message.id, str) else message.id or ():
            for piece in re.split(r"%\(\w+\)s", msgid):
                piece = piece.strip(" ,.:;()")
                if len(re.findall(r"[A-Za-z]", piece)) >= 4:
                    pieces.add(piece)
    return pieces


ENGLISH = _english_chrome()


def article(number: int, title: str) -> Article:
    return Article(
        id=number,
        title=title,
        url=f"https://dawatmedia.example/news/{number}",
        author="Zarmina Kakar",
        published_at=PUBLISHED,
        summary="کابل – گزارش",
        body_html="<p>کابل – گزارش تازه.</p>",
        ingested_at=PUBLISHED,
        language="fa",
    )


@pytest.fixture(scope="module")
def relay() -> Iterator[RecordingHandler]:
    with smtp_server() as (_controller, handler):
        yield handler


@pytest.fixture(scope="module")
def readers_settings(relay: RecordingHandler, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """The shipped config (its appeal per language), every shipped language published,
    a goal, a Vipps link: every part of the appeal shows."""
    return make_settings(
        tmp_path_factory.mktemp("languages"),
        relay.port,
        publication={"languages": list(LANGUAGES), "timezone": "Europe/Oslo"},
        donation={"goal_amount": 60_000, "vipps_link": "https://qr.vipps.no/donations/1"},
    )


def received(relay: RecordingHandler, settings: Settings, issue: RenderedIssue, to: str) -> Any:
    send_test_copy(settings, issue, to)
    (message,) = relay.wait_for(to)
    return message


def parts(message: EmailMessage) -> tuple[str, str, str]:
    """The subject, the HTML and the text part, as a mail client decodes them."""
    subject = str(make_header(decode_header(message["Subject"])))
    html = str(message.get_body(("html",)).get_content())
    text = str(message.get_body(("plain",)).get_content())
    return subject, html, text


def plain(text: str) -> str:
    """White space (the no-break spaces of amounts, line ends) as single spaces."""
    return " ".join(text.split())


def english_left(text: str, *values: str) -> list[str]:
    """The English chrome found in `text` once the values it shows (names, the
    article, the payment details) and the links are taken out."""
    text = re.sub(r"https?://\S+", " ", text)
    for value in values:
        text = text.replace(value, " ")
    return sorted(piece for piece in ENGLISH if re.search(rf"\b{re.escape(piece)}\b", text))


@pytest.mark.parametrize("language", LANGUAGES)
def test_an_issue_and_a_digest_reach_each_reader_in_their_language(
    language: str, relay: RecordingHandler, readers_settings: Settings
) -> None:
    settings = readers_settings
    goal = goal_of(settings.donation, {"NOK": 4_125_000}, "this month")
    first, second = article(41, "Kabul"), article(42, "Herat")
    issue = render_article_issue(settings, first, goal=goal, language=language)
    since, until = datetime(2025, 10, 6, tzinfo=UTC), datetime(2025, 10, 12, 20, tzinfo=UTC)
    digest = render_digest_issue(
        settings, [second, first], "2025-W41", since, until, goal=goal, language=language
    )
    assert PERIOD[language] in digest.html and PERIOD[language] in digest.text
    appeal = settings.donation.in_language(language)
    t = translator(settings, language)
    day = i18n.local_day(PUBLISHED, language, ZoneInfo("Europe/Oslo"))
    for rendered, name in ((issue, "issue"), (digest, "digest")):
        # the donors' copy thanks them in their language too
        assert appeal.thanks_heading in rendered.thanks_html
        assert t.gettext("To give again:") in rendered.thanks_text
        subject, html, text = parts(received(relay, settings, rendered, f"{name}-{language}@x.org"))
        page = lxml.html.fromstring(html)
        assert page.get("lang") == language and page.get("dir") == i18n.direction(language)
        body = plain(page.body.text_content())
        # the appeal, the dates, the goal's amounts in the reader's language
        assert plain(appeal.appeal) in body and plain(appeal.heading) in body
        assert day in body and day in text
        assert RAISED[language] in plain(body) and RAISED[language] in plain(text)
        assert t.gettext("Give with Vipps") in body and t.gettext("Mark your transfer") in text
        # the payment details as configured, left to right in every layout
        numbers = [span.text for span in page.iter("span") if span.get("dir") == "ltr"]
        for value in (*PAYMENT, rendered.reference):
            assert value in numbers and value in text
        if language == "en":
            assert appeal.appeal == settings.donation.appeal
            continue
        assert appeal.appeal != settings.donation.appeal, "the config's own translation"
        shown = ("Dawat Media Center", "Zarmina Kakar", "Kabul", "Herat", "DNB Bank", "Vipps")
        values = (*shown, settings.publication.postal_address)
        assert english_left(body, *values) == []
        assert english_left(text, *values) == []
        assert english_left(subject, *values) == []


def test_the_text_part_of_a_dari_email_reads_right_to_left_by_itself(
    readers_settings: Settings,
) -> None:
    """No bidi marks added: each Dari paragraph starts with a Dari letter, which makes
    it right to left in clients that follow the Unicode rules, and a mark would show as
    a stray character in the others (or be copied into a bank's reference field)."""
    text = render_article_issue(readers_settings, article(41, "Kabul"), language="fa-AF").text
    assert "\u200f" not in text and "\u200e" not in text.replace("\u200eNOK", "NOK")
    read_online = i18n.translations((ROOT / "locale",), "fa-AF").gettext("Read it on our website")
    assert f"{read_online}: https://dawatmedia.example/news/41" in text


def test_the_thanks_for_a_gift_is_in_the_readers_language(readers_settings: Settings) -> None:
    gifts = (
        ThankedGift(date(2025, 10, 8), 150_000, "NOK"),
        ThankedGift(date(2025, 10, 9), 1250, "EUR"),
    )
    thanks = render_gift_thanks(readers_settings, "Nasrin", gifts, "fa-AF")
    assert thanks.subject == "تشکر از کمک شما به Dawat Media Center"
    text = plain(thanks.text)
    assert "NOK ۱٬۵۰۰" in text and "€ ۱۲٫۵۰" in text
    assert (
        "۸ اکتوبر ۲۰۲۵" in text
        and readers_settings.donation.in_language("fa-AF").thanks_heading in text
    )
    assert 'dir="rtl"' in thanks.html
    assert (
        english_left(
            text, "Dawat Media Center", "Nasrin", readers_settings.publication.postal_address
        )
        == []
    )


def test_a_language_without_its_own_appeal_is_warned_about_at_start(
    readers_settings: Settings,
) -> None:
    assert appeal_language_warning(readers_settings) is None  # the shipped config has all
    settings = readers_settings.replace(publication={"languages": ["en", "fa-AF", "ar"]})
    warning = appeal_language_warning(settings)
    assert warning is not None and "ar without an appeal" in warning
    assert "[donation.languages.ar]" in warning
    texts = ("heading", "appeal", "thanks_heading", "thanks_text")
    bare = settings.replace(donation=dict.fromkeys(texts, ""))
    assert appeal_language_warning(bare) is None, "no appeal: nothing to translate"


@SQLITE
def test_a_dari_reader_is_confirmed_and_welcomed_in_dari(
    engine: Engine, settings: Settings, smtp: RecordingHandler
) -> None:
    settings = settings.replace(publication={"languages": list(LANGUAGES)})
    reader = add_subscriber(engine, "dari@example.org", "Nasrin")
    assert reader.id is not None
    with engine.begin() as connection:
        connection.execute(
            update(SUBSCRIBERS).where(SUBSCRIBERS.c.id == reader.id).values(languages="fa-AF,en")
        )
    assert queue_confirmation(engine, reader.id)
    assert send_queued(engine, settings) == {"sent": 1}
    t = translator(settings, "fa-AF")
    (confirmation,) = smtp.wait_for("dari@example.org")
    subject, html, text = parts(confirmation)
    assert subject == t.gettext("Confirm your subscription to %(name)s") % {
        "name": "Dawat Media Center"
    }
    assert 'lang="fa-AF" dir="rtl"' in html
    assert t.gettext("Yes, subscribe me") in html and t.gettext("Yes, subscribe me") in text
    shown = ("Dawat Media Center", settings.publication.postal_address)
    assert english_left(plain(lxml.html.fromstring(html).body.text_content()), *shown) == []
    with engine.begin() as connection:
        connection.execute(
            update(SUBSCRIBERS)
            .where(SUBSCRIBERS.c.id == reader.id)
            .values(status="active", confirmed_at=utcnow())
        )
        connection.execute(queued_mail(MailKind.WELCOME, utcnow(), subscriber_id=reader.id))
    assert send_queued(engine, settings) == {"sent": 1}
    welcome = smtp.wait_for("dari@example.org", 2)[1]
    subject, html, text = parts(welcome)
    assert subject == t.gettext("Welcome to %(name)s") % {"name": "Dawat Media Center"}
    page = lxml.html.fromstring(html)
    assert page.get("lang") == "fa-AF" and page.get("dir") == "rtl"
    body = plain(page.body.text_content())
    assert t.gettext("Dear %(name)s,") % {"name": "Nasrin"} in body
    assert plain(settings.donation.in_language("fa-AF").appeal) in body
    values = (*shown, "Nasrin", "DNB Bank", "Vipps")
    assert english_left(body, *values) == [] and english_left(text, *values) == []


# Where the Dari email's parts sit at a phone's width.
MEASURE = """() => {
  const masthead = document.querySelector('td.px a');
  const column = masthead.closest('td').getBoundingClientRect();
  const heading = document.querySelector('table.donation h2');
  const range = document.createRange();
  range.selectNodeContents(heading);
  const words = range.getBoundingClientRect();
  const box = heading.getBoundingClientRect();
  return {
    scroll: document.documentElement.scrollWidth, viewport: document.documentElement.clientWidth,
    direction: getComputedStyle(document.querySelector('table.donation td')).direction,
    mastheadLeft: masthead.getBoundingClientRect().left - column.left,
    mastheadRight: column.right - masthead.getBoundingClientRect().right,
    headingLeft: words.left - box.left, headingRight: box.right - words.right,
  };
}"""


def test_a_dari_email_on_a_phone_is_mirrored_and_fits(
    browser: Any, readers_settings: Settings
) -> None:
    settings = readers_settings
    goal = goal_of(settings.donation, {"NOK": 4_125_000}, "this month")
    rendered = render_article_issue(settings, article(41, "Kabul"), goal=goal, language="fa-AF")
    page = browser.new_page(viewport={"width": 375, "height": 900})
    try:
        page.set_content(preview(settings, rendered), wait_until="load")
        shown: dict[str, Any] = page.evaluate(MEASURE)
    finally:
        page.close()
    assert shown["scroll"] <= shown["viewport"], "no sideways scrolling"
    assert shown["direction"] == "rtl"
    # the masthead and the appeal's heading start on the right
    assert shown["mastheadRight"] < 30 < shown["mastheadLeft"]
    assert shown["headingRight"] < 2 < shown["headingLeft"]


def test_the_buttons_labels_from_the_config_win_over_the_catalogs(
    readers_settings: Settings,
) -> None:
    settings = readers_settings.replace(donation={"vipps_label": "Vipps now"})
    html = render_article_issue(settings, article(41, "Kabul"), language="en").html
    assert ">Vipps now</a>" in html and "Give with Vipps" not in html
    dari = render_article_issue(readers_settings, article(41, "Kabul"), language="fa-AF").html
    assert ">با Vipps کمک کنید</a>" in dari, "the catalog's, where the config gives none"
    english_label = render_article_issue(settings, article(41, "Kabul"), language="fa-AF").html
    assert ">با Vipps کمک کنید</a>" in english_label, "[donation]'s label is the publication's"


def test_mailer_warns_at_start_of_a_language_without_its_appeal(tmp_path: Path) -> None:
    result = run_mailer(tmp_path, "subscribers", "list", MAILER_PUBLICATION_LANGUAGES="en,fa-AF,ar")
    assert result.returncode == 0, result.stderr
    assert "warning: [publication] languages has ar without an appeal" in result.stderr
    assert "fa-AF" not in result.stderr, "the shipped config has the Dari appeal"
