"""Who signs in at the desk, through real HTTP (uvicorn on 127.0.0.1, httpx) and a real SMTP
server: the second factor (turning it on and off, the code step at sign-in, a code taken
once, [desk] require_2fa for admins), a forgotten password (the mail, the link that works
once and for an hour), and the admins' page of accounts."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import httpx
import pyotp
import pytest
from sqlalchemy import Engine, select
from sqlmodel import Session

from deskclient import ANN, PASSWORD, Desk, audit_count, csrf_of, sign_in
from mailer import editors
from mailer.models import AUDIT_EVENTS, TRANSACTIONAL_MAILS, AuditAction, Editor, EditorRole, utcnow
from mailer.password_links import make_reset_token
from mailer.settings import Settings
from mailer.testing import RecordingHandler, queued_mails, served
from mailer.transactional import send_queued
from mailer.web.desk.signin import FORGOT_PER_ACCOUNT, FORGOT_PER_CLIENT
from mailer.web.desk.state import SIGN_INS_PER_ACCOUNT

BOB = "bob@newsroom.example"  # an editor, not an admin
NEW_PASSWORD = "a different long passphrase"


@pytest.fixture
def desk(engine: Engine, settings: Settings) -> Iterator[Desk]:
    """conftest's desk (Ann, an admin), with sessions that do not idle out in seconds: a
    test here keeps one session waiting while another does several steps."""
    editors.add_editor(engine, ANN, PASSWORD, EditorRole.ADMIN)
    with served(settings, engine) as (url, running):
        yield Desk(url, running)


@contextmanager
def signed_in(desk: Desk, email: str = ANN, password: str = PASSWORD) -> Iterator[httpx.Client]:
    client = desk.signed_in(email, password)
    try:
        yield client
    finally:
        client.close()


def editor_row(engine: Engine, email: str) -> Editor:
    with Session(engine) as session:
        found = session.scalars(select(Editor).where(Editor.email == email)).first()
        assert found is not None
        session.expunge(found)
        return found


def audit_rows(engine: Engine) -> list[tuple[str, int | None, str]]:
    with engine.connect() as connection:
        query = select(AUDIT_EVENTS.c.action, AUDIT_EVENTS.c.editor_id, AUDIT_EVENTS.c.subject)
        return [tuple(row) for row in connection.execute(query.order_by(AUDIT_EVENTS.c.id))]


def secret_on(page: httpx.Response) -> str:
    found = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page.text)
    assert found, page.text
    return found.group(1)


def turn_on_totp(client: httpx.Client) -> pyotp.TOTP:
    """Turn the signed-in editor's second factor on from the account page, as they would."""
    page = client.get("/desk/account")
    totp = pyotp.TOTP(secret_on(page))
    used = totp.now()
    answer = client.post("/desk/account/totp", data={"csrf": csrf_of(page), "code": used})
    assert answer.status_code == 303 and answer.headers["location"] == "/desk/account"
    USED_CODES[totp.secret] = used
    return totp


# the code each turn_on_totp took: a test reusing it must not depend on the clock's step
USED_CODES: dict[str, str] = {}


def next_code(totp: pyotp.TOTP) -> str:
    """The code of the next 30-second step: taken as current (a phone's clock ahead), and
    newer than one just used, so a test need not wait for the clock."""
    return totp.at(utcnow() + timedelta(seconds=30))


def send_code(client: httpx.Client, code: str) -> httpx.Response:
    form = client.get("/desk/login/code")
    assert form.status_code == 200, form.text
    return client.post("/desk/login/code", data={"csrf": csrf_of(form), "code": code})


def test_an_editor_turns_on_the_second_factor_and_then_signs_in_with_a_code(engine, desk):
    with signed_in(desk) as client:
        page = client.get("/desk/account")
        assert page.status_code == 200 and "Second factor" in page.text
        secret = secret_on(page)
        assert "otpauth://totp/" in page.text and f"secret={secret}" in page.text
        assert "<svg" in page.text  # the QR code, drawn in the page
        assert client.get("/desk/account").text.count(secret) >= 1, "a reload keeps the key"
        wrong = client.post("/desk/account/totp", data={"csrf": csrf_of(page), "code": "000000"})
        assert wrong.status_code == 200 and "That code is not right" in wrong.text
        assert not editor_row(engine, ANN).totp_enabled
        totp = turn_on_totp(client)
        assert editor_row(engine, ANN).totp_enabled
        assert "<strong>On.</strong>" in client.get("/desk/account").text
    ann = editor_row(engine, ANN).id
    assert (AuditAction.TOTP_ENABLED, ann, f"editor {ann}") in audit_rows(engine)

    with desk.client() as client:
        password_passed = sign_in(client)
        assert password_passed.status_code == 303
        assert password_passed.headers["location"] == "/desk/login/code"
        assert client.get("/desk").status_code == 303, "not signed in before the code"
        wrong = send_code(client, "123456")
        assert wrong.status_code == 200 and "That code is not right" in wrong.text
        assert client.get("/desk").status_code == 303
        code = next_code(totp)
        right = send_code(client, code)
        assert right.status_code == 303 and right.headers["location"] == "/desk"
        assert client.get("/desk").status_code == 200

    with desk.client() as client:  # the same code, seen over a shoulder, a moment later
        assert sign_in(client).headers["location"] == "/desk/login/code"
        again = send_code(client, code)
        assert again.status_code == 200 and "was used already" in again.text
        assert client.get("/desk").status_code == 303


def test_the_code_step_needs_the_password_step_first(desk):
    with desk.client() as client:
        assert client.get("/desk/login/code").headers["location"] == "/desk/login"
        form = client.get("/desk/login")
        answer = client.post("/desk/login/code", data={"csrf": csrf_of(form), "code": "123456"})
        assert answer.status_code == 303 and answer.headers["location"] == "/desk/login"
        assert client.get("/desk").status_code == 303


def test_codes_count_against_the_sign_in_limit_then_429_even_for_a_right_one(engine, desk):
    with signed_in(desk) as client:
        totp = turn_on_totp(client)
    with desk.client() as client:
        # two attempts so far: the sign-in that turned it on, and this password
        assert sign_in(client).headers["location"] == "/desk/login/code"
        for _ in range(SIGN_INS_PER_ACCOUNT - 2):
            assert send_code(client, "999999").status_code == 200
        refused = send_code(client, next_code(totp))
        assert refused.status_code == 429 and "Too many attempts" in refused.text
        assert client.get("/desk").status_code == 303


def test_an_editor_turns_the_second_factor_off_with_a_current_code(engine, desk):
    with signed_in(desk) as client:
        totp = turn_on_totp(client)
        page = client.get("/desk/account")
        used = {"csrf": csrf_of(page), "code": USED_CODES[totp.secret]}
        stale = client.post("/desk/account/totp/off", data=used)
        assert stale.status_code == 200 and "That code is not right" in stale.text
        assert editor_row(engine, ANN).totp_enabled
        off = client.post(
            "/desk/account/totp/off", data={"csrf": csrf_of(page), "code": next_code(totp)}
        )
        assert off.status_code == 303
    ann = editor_row(engine, ANN)
    assert not ann.totp_enabled and ann.totp_secret is None
    assert AuditAction.TOTP_DISABLED in [action for action, _, _ in audit_rows(engine)]
    with desk.client() as client:
        assert sign_in(client).headers["location"] == "/desk"


@contextmanager
def desk_requiring_2fa(engine: Engine, settings: Settings) -> Iterator[Desk]:
    editors.add_editor(engine, ANN, PASSWORD, EditorRole.ADMIN)
    editors.add_editor(engine, BOB, PASSWORD, EditorRole.EDITOR)
    with served(settings.replace(desk={"require_2fa": True}), engine) as (url, running):
        yield Desk(url, running)


def test_with_require_2fa_an_admin_without_it_reaches_only_the_account_page(engine, settings):
    with desk_requiring_2fa(engine, settings) as desk:
        with desk.client() as client:
            signed = sign_in(client)
            assert signed.status_code == 303 and signed.headers["location"] == "/desk/account"
            for path in ("/desk", "/desk/subscribers", "/desk/editors", "/desk/articles"):
                answer = client.get(path)
                assert answer.status_code == 303 and answer.headers["location"] == "/desk/account"
            page = client.get("/desk/account")
            assert page.status_code == 200
            assert "Admins here sign in with a second factor" in page.text
            totp = turn_on_totp(client)
            assert client.get("/desk").status_code == 200
            page = client.get("/desk/account")
            assert "Turn off" not in page.text  # required: it stays on
            kept = client.post(
                "/desk/account/totp/off", data={"csrf": csrf_of(page), "code": next_code(totp)}
            )
            assert kept.status_code == 200 and editor_row(engine, ANN).totp_enabled
        with desk.client() as client:  # an editor who is not an admin is not asked
            assert sign_in(client, BOB).headers["location"] == "/desk"
            assert client.get("/desk").status_code == 200


def test_a_reset_from_the_command_line_turns_the_second_factor_off(engine, desk):
    with signed_in(desk) as client:
        turn_on_totp(client)
    editors.reset_password(engine, ANN, NEW_PASSWORD)
    ann = editor_row(engine, ANN)
    assert not ann.totp_enabled and ann.totp_secret is None
    with desk.client() as client:
        assert sign_in(client, ANN, NEW_PASSWORD).headers["location"] == "/desk"


def ask_for_link(client: httpx.Client, email: str) -> httpx.Response:
    form = client.get("/desk/forgot")
    assert form.status_code == 200 and '<label for="email">Email</label>' in form.text
    return client.post("/desk/forgot", data={"csrf": csrf_of(form), "email": email})


def link_in(smtp: RecordingHandler, address: str, count: int = 1) -> str:
    message = smtp.wait_for(address, count)[-1]
    assert message["Subject"].startswith("Your password for the desk of")
    assert "List-Unsubscribe" not in message
    found = re.search(r"http://\S+/desk/reset/\S+", message.get_content())
    assert found, message.get_content()
    return found.group(0)


def set_password(client: httpx.Client, link: str, password: str, again: str) -> httpx.Response:
    form = client.get(link)
    assert form.status_code == 200, form.text
    data = {"csrf": csrf_of(form), "password": password, "again": again}
    return client.post(link, data=data)


def test_a_forgotten_password_link_arrives_works_once_and_ends_every_session(engine, desk, smtp):
    with desk.client() as client:
        login = client.get("/desk/login")
        assert 'href="/desk/forgot"' in login.text
        known = ask_for_link(client, ANN)
        assert known.status_code == 303 and known.headers["location"] == "/desk/forgot?sent=1"
        unknown = ask_for_link(client, "nobody@newsroom.example")
        assert unknown.headers["location"] == known.headers["location"]
        sent = client.get("/desk/forgot?sent=1")
        assert "If an account has that address, a link" in sent.text
    link = link_in(smtp, ANN)
    assert queued_mails(engine) == {"sent": 1}  # nothing is kept of the unknown address
    with engine.connect() as connection:
        (row,) = connection.execute(select(TRANSACTIONAL_MAILS)).mappings().all()
    ann = editor_row(engine, ANN)
    assert row["kind"] == "password-reset" and row["editor_id"] == ann.id and row["email"] is None
    assert smtp.to("nobody@newsroom.example") == []

    with signed_in(desk) as elsewhere, desk.client() as client:
        assert elsewhere.get("/desk").status_code == 200
        differ = set_password(client, link, NEW_PASSWORD, NEW_PASSWORD + "!")
        assert differ.status_code == 200 and "not the same" in differ.text
        short = set_password(client, link, "short", "short")
        assert short.status_code == 200 and "at least 12" in short.text
        done = set_password(client, link, NEW_PASSWORD, NEW_PASSWORD)
        assert done.status_code == 303 and done.headers["location"] == "/desk/login?reset=done"
        assert "Your new password is set" in client.get(done.headers["location"]).text
        assert elsewhere.get("/desk").status_code == 303, "every session ends"
        used = client.get(link)
        assert used.status_code == 410 and "used already" in used.text
        assert sign_in(client, ANN, PASSWORD).status_code == 200  # the old one is gone
        assert sign_in(client, ANN, NEW_PASSWORD).headers["location"] == "/desk"
    assert (AuditAction.PASSWORD_RESET, ann.id, f"editor {ann.id}") in audit_rows(engine)


def test_a_password_link_is_good_for_an_hour(engine, desk):
    ann = editor_row(engine, ANN)
    assert ann.id is not None
    keys = desk.settings.signing_keys

    def link(minutes_ago: int) -> str:
        made = utcnow() - timedelta(minutes=minutes_ago)
        return "/desk/reset/" + make_reset_token(keys, ann.id or 0, ann.password_hash, made)

    with desk.client() as client:
        assert client.get(link(59)).status_code == 200
        late = client.get(link(61))
        assert late.status_code == 410 and "This link has expired" in late.text
        form = client.get(link(59))
        answer = client.post(link(61), data={"csrf": csrf_of(form), "password": NEW_PASSWORD,
                                             "again": NEW_PASSWORD})  # fmt: skip
        assert answer.status_code == 410
        forged = client.get(link(1)[:-3] + "abc")
        assert forged.status_code == 404 and "This link does not work" in forged.text
    assert editor_row(engine, ANN).password_hash == ann.password_hash


def test_asking_for_a_link_is_limited_per_account(engine, desk, smtp):
    with desk.client() as client:
        for _ in range(FORGOT_PER_ACCOUNT):
            assert ask_for_link(client, ANN).status_code == 303
        refused = ask_for_link(client, ANN.upper())
        assert refused.status_code == 429 and "Too many requests" in refused.text
    smtp.wait_for(ANN, FORGOT_PER_ACCOUNT)
    assert queued_mails(engine) == {"sent": FORGOT_PER_ACCOUNT}


def test_asking_for_a_link_is_limited_per_client(engine, desk):
    with desk.client() as client:
        for n in range(FORGOT_PER_CLIENT):
            assert ask_for_link(client, f"guess{n}@newsroom.example").status_code == 303
        assert ask_for_link(client, ANN).status_code == 429
    assert queued_mails(engine) == {}, "nobody has the guessed addresses: nothing is kept"


def test_an_admin_adds_an_editor_who_sets_a_password_by_mail_then_removes_them(engine, desk, smtp):
    ann = editor_row(engine, ANN)
    with signed_in(desk) as admin:
        page = admin.get("/desk/editors")
        assert page.status_code == 200
        shown = rf"<strong>{ANN}</strong> \(you\)<br>\s*<span class=.hint.>admin · second "
        shown += "factor off"
        assert re.search(shown, page.text), page.text
        assert '<a href="/desk/editors">Editors</a>' in page.text
        added = admin.post(
            "/desk/editors", data={"csrf": csrf_of(page), "email": BOB, "role": "editor"}
        )
        assert added.status_code == 303
        page = admin.get(added.headers["location"])
        assert f"Added {BOB}. A link to choose their password is on its way" in page.text
        twice = admin.post(
            "/desk/editors", data={"csrf": csrf_of(page), "email": BOB, "role": "editor"}
        )
        assert twice.status_code == 200 and "already has an account" in twice.text
        bob = editor_row(engine, BOB)
        assert bob.role == "editor"

        with desk.client() as client:
            assert sign_in(client, BOB, PASSWORD).status_code == 200  # no password yet
            link = link_in(smtp, BOB)
            assert set_password(client, link, PASSWORD, PASSWORD).status_code == 303
            assert sign_in(client, BOB, PASSWORD).headers["location"] == "/desk"
            board = client.get("/desk")
            assert '<a href="/desk/account">Account</a>' in board.text
            assert "Editors</a>" not in board.text
            assert client.get("/desk/editors").status_code == 403
            before = audit_count(engine)
            sneaked = client.post(
                "/desk/editors",
                data={"csrf": csrf_of(board), "email": "eve@newsroom.example", "role": "admin"},
            )
            assert sneaked.status_code == 403 and audit_count(engine) == before
            assert len(editors.list_editors(engine)) == 2

            page = admin.get("/desk/editors")
            own = admin.post(f"/desk/editors/{ann.id}/remove", data={"csrf": csrf_of(page)})
            assert own.status_code == 200 and "cannot remove your own account" in own.text
            removed = admin.post(f"/desk/editors/{bob.id}/remove", data={"csrf": csrf_of(page)})
            assert removed.status_code == 303
            assert client.get("/desk").status_code == 303, "Bob's session ends at once"
    assert [e.email for e in editors.list_editors(engine)] == [ANN]
    rows = audit_rows(engine)
    assert (AuditAction.EDITOR_ADDED, ann.id, f"editor {bob.id}") in rows
    assert (AuditAction.EDITOR_REMOVED, ann.id, f"editor {bob.id}") in rows


def test_a_link_for_an_account_removed_before_it_went_out_is_not_sent(engine, settings, smtp):
    bob = editors.add_editor(engine, BOB, None, EditorRole.EDITOR)
    editors.invite(engine, bob.id)
    editors.remove_editor(engine, BOB)
    editors.ask_for_password_link(engine, "nobody@newsroom.example")
    assert send_queued(engine, settings) == {"skipped": 1}
    assert smtp.received == []
