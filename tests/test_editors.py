"""The desk's accounts (mailer.editors) and `mailer editors`, as an admin types it: add
with a password from stdin, a duplicate refused, list, a new password, remove."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from sqlmodel import Session, select

from mailer import editors
from mailer.errors import EditorError
from mailer.models import AuditAction, AuditEvent, Editor, EditorRole
from mailer.settings import Settings
from mailer.testing import TEST_SECRET_KEY, commands

PASSWORD = "correct horse battery staple"


def editors_cli(
    settings: Settings, cwd: Path, *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """`mailer editors ...` on the test's database, with `stdin` piped in."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MAILER_")}
    env = {
        **clean,
        "MAILER_SECRET_KEY": TEST_SECRET_KEY,
        "MAILER_DATABASE_URL": settings.database.url,
    }
    return commands.mailer(["editors", *args], cwd, env, input=stdin)


# one backend: the command line is the same on both, and what it stores is tested on both
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_admin_adds_lists_resets_and_removes_editors_from_the_command_line(
    engine, settings, tmp_path
):
    added = editors_cli(
        settings,
        tmp_path,
        "add",
        " Ann@Newsroom.Example ",
        "--admin",
        "--password-stdin",
        stdin=PASSWORD + "\n",
    )
    assert added.returncode == 0, added.stderr
    assert "Added ann@newsroom.example (admin)" in added.stdout
    added = editors_cli(
        settings, tmp_path, "add", "bo@newsroom.example", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert added.returncode == 0, added.stderr

    listed = editors_cli(settings, tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert "admin" in lines[0] and "ann@newsroom.example" in lines[0]
    assert "editor" in lines[1] and "bo@newsroom.example" in lines[1]
    assert lines[-1] == "2 editors"

    # Bo's phone, with the desk's second factor on it, is lost
    with Session(engine) as session:
        bo = session.exec(select(Editor).where(Editor.email == "bo@newsroom.example")).one()
        bo.totp_secret, bo.totp_enabled = "JBSWY3DPEHPK3PXP", True
        session.add(bo)
        session.commit()
    assert "second factor" in editors_cli(settings, tmp_path, "reset", "--help").stdout
    reset = editors_cli(
        settings,
        tmp_path,
        "reset",
        "BO@newsroom.example",
        "--password-stdin",
        stdin="a brand new passphrase\n",
    )
    assert reset.returncode == 0, reset.stderr
    assert "their second factor is off" in reset.stdout
    with Session(engine) as session:
        bo = session.exec(select(Editor).where(Editor.email == "bo@newsroom.example")).one()
        assert not bo.totp_enabled and bo.totp_secret is None
    assert editors.authenticate(engine, "bo@newsroom.example", PASSWORD) is None
    assert editors.authenticate(engine, "bo@newsroom.example", "a brand new passphrase") is not None

    removed = editors_cli(settings, tmp_path, "remove", "bo@newsroom.example")
    assert removed.returncode == 0, removed.stderr
    assert [e.email for e in editors.list_editors(engine)] == ["ann@newsroom.example"]
    with Session(engine) as session:
        stored = session.exec(select(Editor)).one()
        actions = [e.action for e in session.exec(select(AuditEvent).order_by(AuditEvent.id))]
    assert PASSWORD not in stored.password_hash and stored.password_hash.startswith("$argon2id$")
    assert actions == [
        AuditAction.EDITOR_ADDED,
        AuditAction.EDITOR_ADDED,
        AuditAction.PASSWORD_RESET,
        AuditAction.EDITOR_REMOVED,
    ]


# one backend: the command line is the same on both, and what it stores is tested on both
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_command_line_refuses_a_duplicate_a_short_password_and_an_unknown_editor(
    engine, settings, tmp_path
):
    editors.add_editor(engine, "ann@newsroom.example", PASSWORD)
    again = editors_cli(
        settings, tmp_path, "add", "ANN@newsroom.example", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert again.returncode == 1
    assert "ann@newsroom.example already has an account" in again.stderr
    short = editors_cli(
        settings, tmp_path, "add", "cy@newsroom.example", "--password-stdin", stdin="too short\n"
    )
    assert short.returncode == 1 and "give at least 12" in short.stderr
    unknown = editors_cli(settings, tmp_path, "remove", "nobody@newsroom.example")
    assert unknown.returncode == 1 and "no editor has the address" in unknown.stderr
    bad = editors_cli(
        settings, tmp_path, "add", "not an address", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert bad.returncode == 1 and "not a valid email address" in bad.stderr
    usage = editors_cli(settings, tmp_path, "add")
    assert usage.returncode == 2
    assert [e.email for e in editors.list_editors(engine)] == ["ann@newsroom.example"]


def test_sign_in_checks_the_password_and_answers_none_alike_for_a_wrong_one_or_an_unknown_address(
    engine,
):
    editors.add_editor(engine, "ann@newsroom.example", PASSWORD, EditorRole.ADMIN)
    signed_in = editors.authenticate(engine, " Ann@newsroom.example", PASSWORD)
    assert signed_in is not None and signed_in.is_admin
    assert editors.authenticate(engine, "ann@newsroom.example", PASSWORD + "x") is None
    assert editors.authenticate(engine, "nobody@newsroom.example", PASSWORD) is None
    assert editors.authenticate(engine, "not an address", PASSWORD) is None


def test_a_password_under_twelve_characters_is_refused():
    with pytest.raises(EditorError, match="at least 12"):
        editors.check_password("elevenchars")


def test_a_database_from_before_the_desk_is_upgraded_with_its_tables_and_keeps_its_rows(engine):
    from alembic import command
    from sqlalchemy import inspect

    from mailer.db import SCHEMA_REVISION, _alembic_config, current_revision, open_database
    from mailer.subscribers import add_subscriber, list_subscribers

    add_subscriber(engine, "ana@example.org", "Ana", confirmed=True)
    with engine.begin() as connection:
        config = _alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0008")
    assert "editor" not in inspect(engine).get_table_names()
    upgraded = open_database(str(engine.url.render_as_string(hide_password=False)))
    try:
        assert current_revision(upgraded) == SCHEMA_REVISION
        assert {"editor", "audit_event"} <= set(inspect(upgraded).get_table_names())
        assert [s.email for s in list_subscribers(upgraded, None)] == ["ana@example.org"]
        editors.add_editor(upgraded, "ann@newsroom.example", PASSWORD)
        assert [e.email for e in editors.list_editors(upgraded)] == ["ann@newsroom.example"]
    finally:
        upgraded.dispose()


def test_a_database_from_before_the_desks_work_keeps_its_articles_and_editors(engine):
    from alembic import command

    from mailer.db import SCHEMA_REVISION, _alembic_config, current_revision, open_database
    from mailer.models import Article

    editors.add_editor(engine, "ann@newsroom.example", PASSWORD)
    with Session(engine) as session:
        session.add(Article(guid="g1", title="Kept", body_html="<p>Body</p>"))
        session.commit()
    with engine.begin() as connection:
        config = _alembic_config()
        config.attributes["connection"] = connection
        command.downgrade(config, "0009")
    upgraded = open_database(str(engine.url.render_as_string(hide_password=False)))
    try:
        assert current_revision(upgraded) == SCHEMA_REVISION
        with Session(upgraded) as session:
            article = session.exec(select(Article)).one()
            editor = session.exec(select(Editor)).one()
        assert (article.title, article.left_out) == ("Kept", "[]")
        assert (editor.email, editor.totp_enabled, editor.totp_secret) == (
            "ann@newsroom.example",
            False,
            None,
        )
    finally:
        upgraded.dispose()
