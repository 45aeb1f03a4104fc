"""`subscribers remove --purge` erases a person from every table; the marker left to stop
the address coming back cannot be matched by hashing guesses without the purge key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import Engine, MetaData, select, text

from mailer.articles import ingest_file
from mailer.bounce_processing import BounceReport, apply_bounce
from mailer.bounces.findings import Action, Bounce, Failure
from mailer.delivery import deliver
from mailer.demo import SAMPLE_ARTICLE
from mailer.errors import SubscriberError
from mailer.issues import article_issue
from mailer.models import utcnow
from mailer.replies import redacted_reply
from mailer.subscriber_csv import import_csv
from mailer.subscribers import (
    add_subscriber,
    confirm_subscription,
    request_subscription,
)
from mailer.testing import TEST_SECRET_KEY, run_mailer

ADDRESS = "ana.reader@example.org"
IP = "203.0.113.77"
PURGE_KEY = "purge-key-of-the-newsroom-" + "k" * 20


def mailer(cwd: Path, database_url: str, smtp_port: int, *args: str, **env: str):
    return run_mailer(
        cwd,
        *args,
        MAILER_SECRET_KEY=TEST_SECRET_KEY,
        MAILER_DATABASE_URL=database_url,
        MAILER_SMTP_PORT=str(smtp_port),
        **env,
    )


def every_text(engine: Engine) -> str:
    """Every value of every column of every table, as text, one per line."""
    metadata = MetaData()
    metadata.reflect(engine)
    values = []
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            for row in connection.execute(select(table)):
                values += [str(value) for value in row if value is not None]
    return "\n".join(values).lower()


@pytest.mark.parametrize("key_from", ["file", "environment"])
def test_purge_leaves_the_address_and_ip_in_no_table(
    tmp_path, settings, engine, smtp, database_url, key_from
):
    # a reader who signed up on the site and confirmed from an address, and a relay that
    # quoted their address when it refused the message
    request_subscription(engine, ADDRESS, "Ana Reader", "every", purge_key=PURGE_KEY)
    with engine.connect() as connection:
        pending = connection.execute(text("SELECT id FROM subscriber")).scalar_one()
    confirm_subscription(engine, pending, IP)
    add_subscriber(engine, "bo@example.org", confirmed=True)
    smtp.refuse[ADDRESS] = f"550 5.1.1 <{ADDRESS}>: Recipient address rejected: User unknown"
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    deliver(engine, settings, article_issue(engine, settings, article))
    # bounces that came back by mail later, quoting the addresses
    for number, address in enumerate((ADDRESS, "bo@example.org")):
        said = Failure(Action.FAILED, address, "5.2.2", f"552 5.2.2 <{address}>: Mailbox full")
        apply_bounce(engine, settings, Bounce(f"k{number}", (said,)), "1.eml", "1.eml",
                     utcnow(), BounceReport())  # fmt: skip
    assert ADDRESS in every_text(engine) and IP in every_text(engine)

    env = {"MAILER_PURGE_KEY": PURGE_KEY} if key_from == "environment" else {}
    run = lambda *args: mailer(tmp_path, database_url, smtp.port, *args, **env)  # noqa: E731
    assert ADDRESS in run("status", "1").stdout  # the reply quotes it
    removed = run("subscribers", "remove", ADDRESS.upper(), "--purge")
    assert removed.returncode == 0, removed.stderr

    stored = every_text(engine)
    assert ADDRESS not in stored and "ana.reader" not in stored and IP not in stored
    assert "ana reader" not in stored
    assert "bo@example.org" in stored  # nobody else's data
    with engine.connect() as connection:  # their bounce event is gone, Bo's stays
        kept = connection.execute(text("SELECT reason FROM bounce_event")).scalars().all()
    assert kept == ["552 5.2.2 <bo@example.org>: Mailbox full"]
    status = run("status", "1")
    assert status.returncode == 0 and ADDRESS not in status.stdout + status.stderr
    assert "550 5.1.1" in status.stdout  # what happened is still told

    # the marker is keyed: the plain hash of the address (a guess) is not in the table
    assert hashlib.sha256(ADDRESS.encode()).hexdigest() not in stored
    if key_from == "file":
        key_file = tmp_path / "var" / "purge_key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        assert len(key_file.read_text(encoding="utf-8").strip()) >= 32

    refused = run("subscribers", "add", ADDRESS, "--confirmed")
    assert refused.returncode == 1 and "erased" in refused.stderr
    listing = tmp_path / "again.csv"
    listing.write_text(f"email\n{ADDRESS}\n", encoding="utf-8")
    imported = run("subscribers", "import", str(listing))
    assert f"line 2: skipped: {ADDRESS} is erased" in imported.stderr
    assert "Imported 0" in imported.stdout
    assert ADDRESS not in every_text(engine)


def test_a_marker_left_by_an_older_version_still_blocks_the_address(engine, tmp_path):
    """Older versions left a plain sha256; it cannot be re-keyed, so both are checked."""
    add_subscriber(engine, "old@example.org", confirmed=True)
    marker = "erased:" + hashlib.sha256(b"old@example.org").hexdigest()
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE subscriber SET email = :marker WHERE email = 'old@example.org'"),
            {"marker": marker},
        )
    with pytest.raises(SubscriberError, match="erased"):
        add_subscriber(engine, "Old@Example.org", purge_key=PURGE_KEY)
    listing = tmp_path / "again.csv"
    listing.write_text("email\nold@example.org\n", encoding="utf-8")
    report = import_csv(engine, listing, purge_key=PURGE_KEY)
    assert report.added == 0 and "erased" in report.skipped[0][1]
    assert (
        request_subscription(engine, "old@example.org", None, "every", purge_key=PURGE_KEY) is None
    )


def test_a_redacted_reply_keeps_the_codes_only():
    assert redacted_reply("550 5.1.1 <a@example.org>: unknown").startswith("550 5.1.1 ")
    assert "a@example.org" not in redacted_reply("550 5.1.1 <a@example.org>: unknown")
    assert "x@example.org" not in redacted_reply("connection lost talking to x@example.org")


def test_rows_of_erased_subscribers_are_not_exported(engine):
    from io import StringIO

    from mailer.subscriber_csv import export_csv
    from mailer.subscribers import remove_subscriber

    add_subscriber(engine, "ana@example.org", confirmed=True)
    remove_subscriber(engine, "ana@example.org", purge=True, purge_key=PURGE_KEY)
    out = StringIO()
    assert export_csv(engine, out) == 0
    with engine.connect() as connection:
        row = connection.execute(text("SELECT email FROM subscriber")).scalar_one()
    assert row.startswith("erased:hmac:")


def test_links_sent_before_a_purge_store_nothing_of_the_person_again(engine, settings):
    """An erased reader's old preferences link must not write a name back into their
    row, nor reach it at all once the public id it names is gone."""
    from mailer.subscribers import find_subscriber, remove_subscriber, resolve, update_preferences

    reader = add_subscriber(engine, ADDRESS, "Ana Reader", confirmed=True)
    old_public_id = reader.public_id
    remove_subscriber(engine, ADDRESS, purge=True, purge_key=PURGE_KEY)
    with pytest.raises(SubscriberError):
        resolve(engine, old_public_id)  # a link made before the purge names nobody
    assert reader.id is not None
    with pytest.raises(SubscriberError):  # a link with the old numeric id, or a page left open
        update_preferences(engine, reader.id, "Ana Reader", "weekly")
    erased = find_subscriber(engine, reader.id)
    assert erased.name is None and erased.frequency == "every"
    assert "ana" not in every_text(engine)
