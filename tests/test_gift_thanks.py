"""The thank-you mail for a gift ([donation] thank_gift_mail): a gift matched to an active
reader brings them one, through the transactional outbox and a real SMTP server, once per
gift; gifts that arrive together, or while the thanks still waits, share one mail."""

from __future__ import annotations

from datetime import date, timedelta
from email.message import EmailMessage

import pytest
from sqlalchemy import Engine, select

from mailer.gift_thanks import thank_new_gifts
from mailer.models import GIFTS, TRANSACTIONAL_MAILS, MailKind, utcnow
from mailer.settings import Settings
from mailer.subscribers import add_subscriber, unsubscribe
from mailer.transactional import send_queued

TODAY = utcnow().date()


def give(
    engine: Engine,
    amount_minor: int,
    subscriber_id: int | None,
    received_on: date = TODAY - timedelta(days=2),
    currency: str = "NOK",
) -> int:
    with engine.begin() as connection:
        taken = len(connection.execute(GIFTS.select()).fetchall())
        return int(
            connection.execute(
                GIFTS.insert().values(
                    source="csv",
                    source_key=f"test:{taken}",
                    received_on=received_on,
                    amount_minor=amount_minor,
                    currency=currency,
                    remittance="",
                    subscriber_id=subscriber_id,
                    imported_at=utcnow(),
                )
            ).inserted_primary_key[0]
        )


def reader(engine: Engine, email: str, name: str | None = None) -> int:
    subscriber = add_subscriber(engine, email, name, confirmed=True)
    assert subscriber.id is not None
    return subscriber.id


def thanked(engine: Engine) -> dict[int, bool]:
    with engine.connect() as connection:
        rows = connection.execute(select(GIFTS.c.id, GIFTS.c.thanked_at)).all()
    return {gift_id: when is not None for gift_id, when in rows}


def thanks_mails(engine: Engine) -> list[str]:
    query = select(TRANSACTIONAL_MAILS.c.status).where(
        TRANSACTIONAL_MAILS.c.kind == MailKind.GIFT_THANKS
    )
    with engine.connect() as connection:
        return list(connection.execute(query.order_by(TRANSACTIONAL_MAILS.c.id)).scalars())


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


@pytest.fixture
def thanking(settings: Settings) -> Settings:
    return settings.replace(donation={"thank_gift_mail": True})


def test_off_by_default_nothing_is_queued(engine, settings, smtp):
    give(engine, 150_000, reader(engine, "ana@example.org"))
    assert thank_new_gifts(engine, settings) == 0
    assert thanks_mails(engine) == [] and not any(thanked(engine).values())


def test_each_gift_of_a_reader_brings_one_thank_you_with_its_amount(engine, thanking, smtp):
    ana, ben = reader(engine, "ana@example.org", "Ana"), reader(engine, "ben@example.org")
    gone = reader(engine, "gone@example.org")
    unsubscribe(engine, gone)
    day = TODAY - timedelta(days=3)
    gifts = [
        give(engine, 150_000, ana, day),
        give(engine, 1_250, ben, currency="EUR"),
        give(engine, 20_000, None),  # nobody's: matched to no reader
        give(engine, 30_000, gone),  # a reader who left is not written to
        give(engine, 40_000, ben, TODAY - timedelta(days=200)),  # long ago, imported late
    ]
    assert thank_new_gifts(engine, thanking) == 2
    assert thanked(engine) == dict(zip(gifts, [True, True, False, False, False], strict=True))
    assert thanks_mails(engine) == ["queued", "queued"]
    assert send_queued(engine, thanking) == {"sent": 2}
    (to_ana,) = smtp.to("ana@example.org")
    (to_ben,) = smtp.to("ben@example.org")
    assert to_ana["Subject"] == "Thank you for your gift to Dawat Media Center"
    assert to_ana["List-Unsubscribe"], "a subscriber's mail: one click leaves"
    text, html = parts(to_ana)
    when = f"{day:%-d %B %Y}"
    assert (
        "Dear Ana," in text
        and f"Your gift of NOK 1,500 reached Dawat Media Center on {when}"
        in (" ".join(text.split()))
    )
    shown = html.replace("&nbsp;", "\xa0")  # the no-break space, as the entity or itself
    assert "NOK\xa01,500" in shown and when in html and "Unsubscribe" in html
    for part in (text, html):
        assert "Mark your transfer" not in part and "0530 2294668" not in part, "no appeal"
        assert "ana@example.org" in part and "__MAILER_" not in part
    assert "€12.50" in parts(to_ben)[0]
    # a second run finds nothing new, and nothing more is sent
    assert thank_new_gifts(engine, thanking) == 0
    assert send_queued(engine, thanking) == {}
    assert len(smtp.received) == 2


def test_a_gift_arriving_while_the_thanks_waits_joins_it_and_a_later_one_gets_its_own(
    engine, thanking, smtp
):
    ana = reader(engine, "ana@example.org")
    give(engine, 10_000, ana)
    assert thank_new_gifts(engine, thanking) == 1
    give(engine, 25_050, ana)  # imported before the relay took the first thanks
    assert thank_new_gifts(engine, thanking) == 1
    assert thanks_mails(engine) == ["queued"]
    assert send_queued(engine, thanking) == {"sent": 1}
    (both,) = smtp.to("ana@example.org")
    text = parts(both)[0]
    assert "- NOK\xa0100 on" in text and "- NOK\xa0250.50 on" in text
    give(engine, 5_000, ana)
    assert thank_new_gifts(engine, thanking) == 1
    assert send_queued(engine, thanking) == {"sent": 1}
    later = smtp.to("ana@example.org")[1]
    assert "Your gift of NOK\xa050 reached" in parts(later)[0]
    assert "NOK\xa0100" not in parts(later)[0]


def test_a_reader_who_leaves_before_it_goes_out_gets_no_thanks(engine, thanking, smtp):
    ana = reader(engine, "ana@example.org")
    give(engine, 10_000, ana)
    assert thank_new_gifts(engine, thanking) == 1
    unsubscribe(engine, ana)
    assert send_queued(engine, thanking) == {"skipped": 1}
    assert smtp.received == [] and thanks_mails(engine) == ["skipped"]


def test_importing_a_gift_from_a_readers_address_queues_their_thanks(
    engine, thanking, smtp, tmp_path
):
    from mailer.fundraising import import_gifts

    reader(engine, "ana@example.org", "Ana")
    gifts = tmp_path / "gifts.csv"
    received = (TODAY - timedelta(days=1)).isoformat()
    gifts.write_text(
        "date,amount,currency,reference,email,name\n"
        f"{received},250.00,NOK,,ana@example.org,Ana\n"
        f"{received},100.00,NOK,,someone@example.org,Someone\n",
        encoding="utf-8",
    )
    done = import_gifts(engine, thanking, gifts)
    assert (done.new, done.matched, done.thanked) == (2, 1, 1)
    assert thanks_mails(engine) == ["queued"]
    assert import_gifts(engine, thanking, gifts).thanked == 0, "once per gift"
