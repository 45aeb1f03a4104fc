"""The corpus of bounces (tests/data/bounces: flufl.bounce's samples, and bounces in the
shapes Postfix, Exim, Sendmail, Exchange, Gmail, Yahoo and Amazon SES send, an ARF
complaint, a vacation reply and garbage) through `mailer bounces process`, with every
recipient it names on the list: hard bounces end bounced, a single soft bounce leaves a
reader active, the complaint unsubscribes, and what is no bounce changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from mailer.bounce_processing import process
from mailer.bounces.mailboxes import read_messages
from mailer.models import BOUNCE_EVENTS, SUBSCRIBERS, utcnow
from mailer.subscriber_csv import import_csv
from mailer.testing import mailer_on

CORPUS = Path(__file__).parent / "data" / "bounces"

BOUNCED = [
    # in the shapes real servers send: no such user, no such account
    "nobody.here@example.org",  # Postfix 5.1.1
    "old.reader@example.net",  # Exim
    "gone.away@example.org",  # Sendmail
    "former.staff@example.net",  # Office 365 5.1.10
    "left.the.company@example.org",  # Exchange, the first of two recipients
    "no.such.reader@example.org",  # Gmail
    "no.account@example.net",  # Yahoo, no status: its words
    "bounced.reader@example.org",  # Amazon SES
    "moved.away@example.net",  # to a VERP address signed with another key: by address
    # flufl.bounce's samples that report a permanent failure
    "userx@example.com",
    "joem@example.com",
    "userx@example.com.dk",
    "userx@its.example.nl",
    "xxxxx@local.ie",
    "userx@example.jp",
    "userx@example.be",
    "bad_user@aol.com",
    "bogus-address@example.net",
    "screenname@aol.com",
    "userx@example.de",
]
ONE_SOFT_BOUNCE = [
    "full.inbox@example.net",  # Gmail over quota, 5.2.2
    "full.mailbox@example.org",  # Exchange, the second recipient: full
    "slow.server@example.net",  # Postfix, delayed
    "deferred.reader@example.org",  # Yahoo, deferred
    "userx@example.cz",
    "userx@example.fi",
    "userx@example.za",
    "bbbsss@example.com",  # "would exceed mailbox quota"
]
COMPLAINED = ["annoyed.reader@example.net"]
UNTOUCHED = [
    "holiday.reader@example.org",  # a vacation reply
    "holiday.staff@example.net",  # Outlook's automatic reply
    "careful.reader@example.org",  # a read receipt
    "kari.nordmann@example.org",  # a mail to unsubscribe, to another installation's token
]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_corpus_ends_each_reader_as_a_person_reading_it_would(engine, settings, tmp_path):
    readers = BOUNCED + ONE_SOFT_BOUNCE + COMPLAINED + UNTOUCHED
    listing = tmp_path / "readers.csv"
    listing.write_text("email\n" + "\n".join(readers) + "\n", encoding="utf-8")
    assert import_csv(engine, listing).added == len(readers)

    done = mailer_on(settings, tmp_path, "bounces", "process", str(CORPUS))
    assert done.returncode == 0, done.stderr
    messages = sum(1 for _ in read_messages([CORPUS]))
    summary = done.stdout.splitlines()[-1]
    assert summary.startswith(f"{messages} messages: ")
    assert f"{len(BOUNCED)} readers bounced, 1 unsubscribed." in summary
    assert "vacation_reply.eml  -  ignored  auto-reply" in done.stdout
    assert "garbage_random.eml  -  ignored  unreadable: no mail headers" in done.stdout
    assert "arf_complaint.eml  annoyed.reader@example.net  complaint  abuse" in done.stdout

    expected = {a: "bounced" for a in BOUNCED} | {a: "active" for a in ONE_SOFT_BOUNCE}
    expected |= {a: "unsubscribed" for a in COMPLAINED} | {a: "active" for a in UNTOUCHED}
    assert statuses(engine) == expected
    assert scores(engine, ONE_SOFT_BOUNCE) == {address: 1 for address in ONE_SOFT_BOUNCE}

    # the same corpus again (fetched twice, a folder processed again): nothing more
    kept = event_count(engine)
    again = process(engine, settings, read_messages([CORPUS]), "", utcnow())
    assert (again.bounced, again.unsubscribed, event_count(engine)) == (0, 0, kept)
    assert statuses(engine) == expected


def statuses(engine) -> dict[str, str]:
    s = SUBSCRIBERS.c
    with engine.connect() as connection:
        return {str(e): str(v) for e, v in connection.execute(select(s.email, s.status))}


def scores(engine, addresses: list[str]) -> dict[str, int]:
    s = SUBSCRIBERS.c
    query = select(s.email, s.bounce_score).where(s.email.in_(addresses))
    with engine.connect() as connection:
        return {str(e): int(v) for e, v in connection.execute(query)}


def event_count(engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(BOUNCE_EVENTS)).scalar_one())
