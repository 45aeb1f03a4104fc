"""Small things an operator meets: `--help` keeps "[section] key" text, a database URL is
never printed with its password, and a base_url in other letters still makes links."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from mailer.articles import ingest_file
from mailer.db import open_database
from mailer.delivery import deliver
from mailer.demo import SAMPLE_ARTICLE
from mailer.errors import ConfigError
from mailer.issues import article_issue
from mailer.settings import Settings
from mailer.subscribers import add_subscriber
from mailer.testing import TEST_SECRET_KEY, make_settings, run_mailer

POSTGRES_URL = os.environ.get("MAILER_TEST_POSTGRES_URL", "")


def mailer(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_mailer(cwd, *args, **{"MAILER_SECRET_KEY": TEST_SECRET_KEY, **env})


@pytest.mark.parametrize(
    ("args", "literal"),
    [
        (["--help"], "[schedule]"),
        (["serve", "--help"], "[publication] base_url"),
        (["scheduler", "--help"], "[schedule] digest_cron"),
        (["subscribers", "import", "--help"], "email[,name][,status][,frequency]"),
    ],
)
def test_help_keeps_bracketed_text(tmp_path, args, literal):
    """Rich markup read "[publication]" as a style tag and dropped it from the help."""
    result = mailer(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert literal in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    "url",
    [
        "mysql://news:hunter2secret@db.example/mailer",  # not a backend mailer runs on
        "Postgresql://news:hunter2secret@db.example/mailer",  # not a URL to the settings
        "postgresql+nodriver://news:hunter2secret@db.example/mailer",  # no such driver
    ],
)
def test_an_error_about_the_database_url_masks_its_password(tmp_path, url):
    result = mailer(tmp_path, "init", MAILER_DATABASE_URL=url)
    assert result.returncode == 1
    assert "hunter2secret" not in result.stdout + result.stderr
    assert "news:***@db.example" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not POSTGRES_URL, reason="MAILER_TEST_POSTGRES_URL is not set")
def test_init_prints_the_database_url_without_its_password(tmp_path):
    password = make_url(POSTGRES_URL).password
    assert password, "the test database's URL needs a password for this test"
    result = mailer(tmp_path, "init", MAILER_DATABASE_URL=POSTGRES_URL)
    assert result.returncode == 0, result.stderr
    assert "Database ready" in result.stdout
    assert f":{password}@" not in result.stdout + result.stderr
    assert ":***@" in result.stdout
    wrong = make_url(POSTGRES_URL).set(password="wrong-" + password)
    failed = mailer(
        tmp_path, "init", MAILER_DATABASE_URL=wrong.render_as_string(hide_password=False)
    )
    assert failed.returncode == 1
    assert f"wrong-{password}" not in failed.stdout + failed.stderr


def send_the_sample_to_one_reader(settings: Settings) -> None:
    engine = open_database(settings.database.url)
    try:
        add_subscriber(engine, "ana@example.org", "Ana", confirmed=True)
        article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
        report = deliver(engine, settings, article_issue(engine, settings, article))
    finally:
        engine.dispose()
    assert report.sent == 1


def test_a_base_url_in_other_letters_sends_with_ascii_links(tmp_path, smtp, database_url):
    """https://x.example/påmelding passed validation, then every send crashed on the
    List-Unsubscribe header and the issue stayed "sending"."""
    settings = make_settings(
        tmp_path,
        smtp.port,
        database_url,
        publication={"base_url": "https://bøker.example/påmelding/"},
    )
    base = "https://xn--bker-gra.example/p%C3%A5melding"
    assert settings.publication.base_url == base
    send_the_sample_to_one_reader(settings)
    message = smtp.to("ana@example.org")[0]
    unsubscribe = message["List-Unsubscribe"]
    assert unsubscribe.startswith(f"<{base}/unsubscribe/") and unsubscribe.isascii()
    html = message.get_body(("html",)).get_content()
    links = re.findall(r'href="([^"]+)"', html)
    own = [link for link in links if link.startswith(base)]
    assert len(own) >= 2 and all(link.isascii() for link in own)


def test_sender_addresses_in_other_letters_send_in_their_ascii_form(tmp_path, smtp, database_url):
    """news@påmelding.no passed validation, then every message failed to build."""
    settings = make_settings(
        tmp_path,
        smtp.port,
        database_url,
        publication={"from_address": "news@påmelding.no", "reply_to": "svar@påmelding.no"},
    )
    assert settings.publication.from_address == "news@xn--pmelding-9za.no"
    send_the_sample_to_one_reader(settings)
    (received,) = smtp.received
    assert received.mail_from == "news@xn--pmelding-9za.no"
    message = received.message
    assert message["From"].addresses[0].addr_spec == "news@xn--pmelding-9za.no"
    assert message["Reply-To"].addresses[0].addr_spec == "svar@xn--pmelding-9za.no"


def test_a_sender_name_in_other_letters_before_the_at_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="from_address"):
        make_settings(tmp_path, publication={"from_address": "nyheter.på@example.org"})
