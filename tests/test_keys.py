"""The keys that sign links: long enough, changeable without breaking links already sent,
created once however many processes start together; and the links say nothing of the
list's size."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from mailer.articles import ingest_file
from mailer.delivery import deliver
from mailer.demo import SAMPLE_ARTICLE
from mailer.errors import ConfigError
from mailer.issues import article_issue
from mailer.models import Subscriber
from mailer.settings import load_settings
from mailer.subscribers import add_subscriber
from mailer.testing import TEST_SECRET_KEY, run_mailer, running_site
from mailer.web import create_app

OLD_KEY = "old-key-" + "o" * 40
ONE_CLICK = {"content": "List-Unsubscribe=One-Click"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def mailer(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_mailer(cwd, *args, **env)


@pytest.mark.parametrize(
    ("variable", "value"),
    [("MAILER_SECRET_KEY", "x"), ("MAILER_SECRET_KEY", "k" * 31)],
)
def test_a_short_secret_key_is_refused_naming_the_variable(tmp_path, variable, value):
    result = mailer(tmp_path, "init", **{variable: value})
    assert result.returncode == 1
    assert "MAILER_SECRET_KEY" in result.stderr and "at least 32" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "subscribers.db").exists(), "refused before anything happened"


def test_a_short_previous_key_is_refused_too():
    with pytest.raises(ConfigError, match="MAILER_SECRET_KEY_PREVIOUS"):
        load_settings(
            environ={"MAILER_SECRET_KEY": TEST_SECRET_KEY, "MAILER_SECRET_KEY_PREVIOUS": "short"}
        )


def test_previous_keys_are_read_from_the_environment():
    two = f"{OLD_KEY}, {'p' * 40}"
    settings = load_settings(
        environ={"MAILER_SECRET_KEY": TEST_SECRET_KEY, "MAILER_SECRET_KEY_PREVIOUS": two}
    )
    assert settings.signing_keys == [OLD_KEY, "p" * 40, TEST_SECRET_KEY]
    assert settings.secret_key == TEST_SECRET_KEY


def sent_links(smtp, settings, engine) -> dict[str, str]:
    article = ingest_file(engine, settings, SAMPLE_ARTICLE).article
    assert deliver(engine, settings, article_issue(engine, settings, article)).sent >= 1
    links = {}
    for received in smtp.received:
        header = str(received.message["List-Unsubscribe"])
        links[received.rcpt_tos[0]] = re.fullmatch(r"<\S+?(/unsubscribe/\S+)>", header)[1]
    return links


def test_a_link_signed_with_the_previous_key_still_unsubscribes(settings, engine, smtp):
    add_subscriber(engine, "ana@example.org", "Ana", confirmed=True)
    add_subscriber(engine, "bo@example.org", "Bo", confirmed=True)
    before = settings.replace(security={"secret_key": OLD_KEY})
    links = sent_links(smtp, before, engine)
    rotated = settings.replace(security={"secret_key_previous": (OLD_KEY,)})
    assert rotated.secret_key == TEST_SECRET_KEY
    with running_site(create_app(rotated, engine)) as site:
        answer = httpx.post(site + links["ana@example.org"], headers=FORM, **ONE_CLICK)
        assert answer.status_code == 200, answer.text
        page = httpx.get(site + links["bo@example.org"])
        assert page.status_code == 200
    with running_site(create_app(settings, engine)) as site:  # the old key dropped
        refused = httpx.post(site + links["bo@example.org"], headers=FORM, **ONE_CLICK)
        assert refused.status_code == 400
    with Session(engine) as session:
        status = {s.email: s.status for s in session.exec(select(Subscriber))}
    assert status == {"ana@example.org": "unsubscribed", "bo@example.org": "active"}


def payload(token: str) -> object:
    data = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(data + "=" * (-len(data) % 4)))


def test_links_carry_a_random_public_id_not_the_sequential_one(settings, engine, smtp):
    for number in range(3):
        add_subscriber(engine, f"r{number}@example.org", confirmed=True)
    links = sent_links(smtp, settings, engine)
    with Session(engine) as session:
        readers = {s.email: s for s in session.exec(select(Subscriber))}
    seen = set()
    for address, link in links.items():
        carried = payload(link.rsplit("/", 1)[1])
        assert isinstance(carried, str) and len(carried) >= 20
        assert carried == readers[address].public_id
        assert not carried.isdigit(), "no number that counts the list"
        seen.add(carried)
    assert len(seen) == 3
    with running_site(create_app(settings, engine)) as site:
        for link in links.values():
            answer = httpx.post(site + link, headers=FORM, **ONE_CLICK)
            assert answer.status_code == 200
        # a link made before there were public ids names the subscriber by id: still works
        from mailer.tokens import UNSUBSCRIBE, make_token

        add_subscriber(engine, "old@example.org", confirmed=True)
        with Session(engine) as session:
            old = session.exec(
                select(Subscriber).where(Subscriber.email == "old@example.org")
            ).one()
        legacy = make_token(settings.secret_key, UNSUBSCRIBE, old.id)
        answer = httpx.post(f"{site}/unsubscribe/{legacy}", headers=FORM, **ONE_CLICK)
        assert answer.status_code == 200
    with Session(engine) as session:
        assert {s.status for s in session.exec(select(Subscriber))} == {"unsubscribed"}


RACE = """
import os, sys, time
from pathlib import Path
from mailer.settings import load_settings
go = Path(sys.argv[1])
settings = load_settings(environ={"MAILER_SECURITY_SECRET_KEY_FILE": sys.argv[2]})
(go.parent / f"ready-{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.001)
print(settings.secret_key)
"""


def test_processes_starting_together_create_one_key(tmp_path):
    """serve and scheduler started at once: one of them read a key file the other had
    created but not yet written, and stopped with "the secret key is too short"."""
    go, key_file = tmp_path / "go", tmp_path / "var" / "secret_key"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RACE, str(go), str(key_file)],
            cwd=tmp_path,
            env=clean,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(30)
    ]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("ready-*"))) < len(processes):  # all at the start line
        assert time.monotonic() < deadline, "the processes did not start"
        time.sleep(0.01)
    go.touch()
    results = [process.communicate(timeout=120) for process in processes]
    for process, (_out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, err
    keys = {out.strip() for out, _err in results}
    assert len(keys) == 1
    key = keys.pop()
    assert len(key) >= 32 and key_file.read_text(encoding="utf-8").strip() == key
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in key_file.parent.iterdir()] == ["secret_key"]  # no leftovers


def test_an_older_database_gets_a_public_id_for_every_subscriber(blank_database_url):
    """The migration fills in a random, unique public id for the rows already there."""
    from alembic import command
    from sqlalchemy import text

    from mailer.db import _alembic_config, create_db_engine, open_database

    database_url = blank_database_url
    engine = create_db_engine(database_url)
    with engine.begin() as connection:
        config = _alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, "0005")
        for number in range(5):
            connection.execute(
                text(
                    "INSERT INTO subscriber (email, status, frequency) "
                    "VALUES (:email, 'active', 'every')"
                ),
                {"email": f"r{number}@example.org"},
            )
    engine.dispose()
    engine = open_database(database_url)
    try:
        with Session(engine) as session:
            ids = [s.public_id for s in session.exec(select(Subscriber))]
        add_subscriber(engine, "new@example.org")
    finally:
        engine.dispose()
    assert len(ids) == 5 and len(set(ids)) == 5
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{20,}", i) for i in ids)


@pytest.mark.parametrize("key", ["secret_key", "secret_key_previous", "purge_key"])
def test_a_key_in_the_config_file_is_refused(tmp_path, key):
    config = tmp_path / "mailer.toml"
    shipped = load_settings(environ={}).config_path
    assert shipped is not None
    text = shipped.read_text(encoding="utf-8")
    config.write_text(text.replace("\n[security]\n", f'\n[security]\n{key} = "{"s" * 40}"\n'))
    with pytest.raises(ConfigError, match=f"MAILER_{key.upper()}"):
        load_settings(config, environ={})
