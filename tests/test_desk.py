"""The editors' desk on `mailer serve` through real HTTP (uvicorn on 127.0.0.1, httpx):
signing in and out, the session cookie and its limits, CSRF, and the dashboard."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import Engine, insert, select
from sqlmodel import Session, SQLModel

from deskclient import ANN, PASSWORD, audit_count, csrf_of, sign_in, without_values
from mailer import editors
from mailer.digest import next_digest_at
from mailer.models import AUDIT_EVENTS, DELIVERIES, SUBSCRIBERS, AuditAction, utcnow
from mailer.runs import readers
from mailer.settings import Settings
from mailer.testing import import_readers, new_issue, served, web_server
from mailer.web import create_app
from mailer.web.desk.state import SIGN_INS_PER_ACCOUNT, SIGN_INS_PER_CLIENT

# The desk's routes anyone may use without a session: signing in (and, as they come,
# the way back in for a forgotten password) and the desk's own static files. Every other
# route refuses a request without a session, whatever route later changes add.
PUBLIC_ROUTES = {
    ("GET", "/desk/login"),
    ("POST", "/desk/login"),
    ("POST", "/desk/login/code"),  # its GET sends anyone without a right password to sign in
    ("GET", "/desk/forgot"),
    ("POST", "/desk/forgot"),
    ("GET", "/desk/reset/1"),
    ("POST", "/desk/reset/1"),
    ("GET", "/desk/static/progress.js"),  # the issue page's script: no data in it
}


def test_an_editor_signs_in_sees_the_dashboard_and_signs_out(engine, desk):
    with desk.client() as client:
        first = client.get("/desk")
        assert first.status_code == 303 and first.headers["location"] == "/desk/login"
        form = client.get("/desk/login")
        assert form.status_code == 200
        assert '<label for="email">Email</label>' in form.text
        assert '<label for="password">Password</label>' in form.text
        assert ">Sign in</button>" in form.text

        signed = sign_in(client)
        assert signed.status_code == 303 and signed.headers["location"] == "/desk"
        board = client.get("/desk")
        assert board.status_code == 200
        assert "Dashboard" in board.text and f"Signed in as {ANN}" in board.text
        assert ">Sign out</button>" in board.text
        assert client.get("/desk/login").headers["location"] == "/desk"

        out = client.post("/desk/logout", data={"csrf": csrf_of(board)})
        assert out.status_code == 303 and out.headers["location"] == "/desk/login"
        assert client.get("/desk").status_code == 303
    with engine.connect() as connection:
        query = select(AUDIT_EVENTS.c.action, AUDIT_EVENTS.c.editor_id).order_by(AUDIT_EVENTS.c.id)
        logged = [tuple(row) for row in connection.execute(query)][-2:]
    ann = editors.list_editors(engine)[0].id
    assert logged == [(AuditAction.SIGNED_IN, ann), (AuditAction.SIGNED_OUT, ann)]


def test_the_dashboard_shows_held_and_scheduled_issues_the_next_digest_and_the_last_counts(
    engine, settings, desk, tmp_path: Path
):
    import_readers(engine, tmp_path, 3)
    sent, held, later = (new_issue(engine, settings, tmp_path, n) for n in (1, 2, 3))
    with Session(engine, expire_on_commit=False) as session:
        for issue, status in ((sent, "sent"), (held, "held"), (later, "scheduled")):
            issue.status = status
            session.add(issue)
        held.held_reason = "554 5.7.1 Message refused as spam"
        later.scheduled_at = utcnow() + timedelta(days=2)
        session.commit()
    with engine.begin() as connection:
        ids = connection.execute(select(SUBSCRIBERS.c.id).order_by(SUBSCRIBERS.c.id)).scalars()
        rows = zip(ids, ("sent", "sent", "deferred"), strict=True)
        connection.execute(
            insert(DELIVERIES),
            [
                {"issue_id": sent.id, "subscriber_id": i, "status": s, "attempts": 1}
                for i, s in rows
            ],
        )
    with desk.client() as client:
        sign_in(client)
        page = client.get("/desk").text
    assert "554 5.7.1 Message refused as spam" in page
    assert f"Issue {later.id}: {later.subject}" in page
    zone = ZoneInfo(settings.publication.timezone)
    assert later.scheduled_at.astimezone(zone).strftime("%a %d %b %Y %H:%M") in page
    digest = next_digest_at(settings.schedule.digest_cron, settings.publication.timezone, utcnow())
    assert digest is not None
    n = readers(engine, "digest")
    assert f"{digest.astimezone(zone).strftime('%a %d %b %Y %H:%M')}, to {n} reader" in page
    row = re.search(rf'<tr><td><a href="/desk/issues/{sent.id}">{sent.id}: .*?</tr>', page, re.S)
    assert row, page
    assert re.findall(r'<td class="n">(\d+)</td>', row.group(0)) == ["2", "1", "0"]


def test_a_wrong_password_and_an_unknown_address_get_the_same_answer(desk):
    with desk.client() as client:
        wrong = sign_in(client, ANN, PASSWORD + "!")
        unknown = sign_in(client, "nobody@newsroom.example", PASSWORD)
        malformed = sign_in(client, "nobody", PASSWORD)
    for answer in (wrong, unknown, malformed):
        assert answer.status_code == 200
        assert "That email and password do not match an account." in answer.text
    assert without_values(wrong) == without_values(unknown) == without_values(malformed)


def test_sign_in_is_limited_per_account_then_429_even_with_the_right_password(desk):
    with desk.client() as client:
        for _ in range(SIGN_INS_PER_ACCOUNT):
            assert sign_in(client, ANN, "not the password at all").status_code == 200
        refused = sign_in(client)
        assert refused.status_code == 429 and "Too many attempts" in refused.text
        assert client.get("/desk").status_code == 303


# one backend: the cookie's and the limits', not the database's
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sign_in_is_limited_per_client(desk):
    with desk.client() as client:
        for n in range(SIGN_INS_PER_CLIENT):
            assert sign_in(client, f"guess{n}@newsroom.example", "x" * 12).status_code == 200
        assert sign_in(client).status_code == 429


def leaf_routes(routes: list[Any]) -> Iterator[Any]:
    """The routes an app answers, through the routers it includes (newer FastAPI keeps
    each included router whole rather than copying its routes)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        yield from leaf_routes(included.routes) if included is not None else [route]


def desk_routes(settings: Settings, engine: Engine) -> list[tuple[str, str]]:
    """Every (method, path) the desk answers, its path parameters filled with 1."""
    app = create_app(settings, engine)
    found = set()
    for route in leaf_routes(app.routes):
        path = getattr(route, "path", "")
        if path == "/desk" or path.startswith("/desk/"):
            filled = re.sub(r"\{[^}]+\}", "1", path)
            found |= {(method, filled) for method in getattr(route, "methods", ()) - {"HEAD"}}
    return sorted(found)


def everything_in(engine: Engine) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, to see that a request changed nothing."""
    with engine.connect() as connection:
        return {
            table.name: sorted(map(tuple, connection.execute(table.select()).all()), key=repr)
            for table in SQLModel.metadata.sorted_tables
        }


def test_every_desk_route_refuses_a_request_without_a_session_and_changes_nothing(
    engine, settings, desk, tmp_path
):
    new_issue(engine, settings, tmp_path)
    import_readers(engine, tmp_path, 3)
    routes = desk_routes(desk.settings, engine)
    assert len(routes) >= 8 and set(routes) >= PUBLIC_ROUTES
    before = everything_in(engine)
    with desk.client() as client:
        for method, path in routes:
            if (method, path) in PUBLIC_ROUTES and method == "GET":
                continue
            data = {"csrf": "guessed", "email": ANN, "password": PASSWORD}
            answer = client.request(method, path, data=data if method == "POST" else None)
            if method == "GET":
                assert answer.status_code == 303, path
                assert answer.headers["location"] == "/desk/login", path
            else:
                assert answer.status_code == 403, (method, path)
            assert answer.headers["cache-control"] == "no-store", path
    assert everything_in(engine) == before


def test_a_post_without_the_sessions_csrf_token_changes_nothing(engine, desk):
    with desk.client() as client:
        form = client.get("/desk/login")
        data = {"email": ANN, "password": PASSWORD}
        assert client.post("/desk/login", data=data).status_code == 403
        assert (
            client.post("/desk/login", data={**data, "csrf": "x" + csrf_of(form)}).status_code
            == 403
        )
        assert client.get("/desk").status_code == 303
        sign_in(client)
        before = audit_count(engine)
        assert client.post("/desk/logout", data={}).status_code == 403
        assert client.post("/desk/logout", data={"csrf": "guessed"}).status_code == 403
        assert client.get("/desk").status_code == 200  # still signed in
        assert audit_count(engine) == before


def test_the_session_cookie_is_httponly_samesite_lax_and_scoped_to_the_desk(desk):
    with desk.client() as client:
        cookie = sign_in(client).headers["set-cookie"]
    assert cookie.startswith("mailer_desk=")
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/desk"} <= flags
    assert "secure" not in flags  # base_url is http here


def test_the_cookie_is_secure_when_the_base_url_is_https(engine, settings):
    def build(_url: str) -> object:
        return create_app(
            settings.replace(publication={"base_url": "https://news.example"}), engine
        )

    with web_server(build) as url:
        cookie = httpx.get(url + "/desk/login").headers["set-cookie"]
    flags = {part.strip().lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "samesite=lax", "secure"} <= flags


def test_a_removed_editors_session_ends_at_once(engine, desk):
    with desk.client() as client:
        sign_in(client)
        assert client.get("/desk").status_code == 200
        editors.remove_editor(engine, ANN)
        assert client.get("/desk").status_code == 303


def test_a_new_password_ends_the_sessions_made_with_the_old_one(engine, desk):
    with desk.client() as client:
        sign_in(client)
        editors.reset_password(engine, ANN, "another long passphrase")
        assert client.get("/desk").status_code == 303


# one backend: the cookie's and the limits', not the database's
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_an_idle_session_ends_and_a_busy_one_goes_on(desk):
    # idle_minutes is 0.05 here: a session unused for 3 seconds is over (the cookie's
    # signature is timed in whole seconds)
    with desk.client() as client:
        sign_in(client)
        for _ in range(4):
            time.sleep(1)
            assert client.get("/desk").status_code == 200  # each answer signs it afresh
        time.sleep(5)
        assert client.get("/desk").status_code == 303


def test_every_desk_page_is_not_stored_and_not_framed(desk):
    with desk.client() as client:
        pages = [
            client.get("/desk"),
            client.get("/desk/login"),
            sign_in(client),
            client.get("/desk"),
        ]
    for page in pages:
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in page.headers["content-security-policy"]


def test_the_desk_is_not_served_when_disabled(engine, settings):
    with served(settings.replace(desk={"enabled": False}), engine) as (url, _running):
        assert httpx.get(url + "/desk/login").status_code == 404


def unlabelled_fields(page: str) -> list[str]:
    """The form fields a screen reader could not name: no <label for=...>, no aria-label."""
    labelled = set(re.findall(r'<label[^>]*\bfor="([^"]+)"', page))
    missing = []
    for tag in re.findall(r"<(?:input|select|textarea)\b[^>]*>", page):
        if re.search(r'type="(?:hidden|submit)"', tag) or "aria-label" in tag:
            continue
        found = re.search(r'\bid="([^"]+)"', tag)
        if found is None or found.group(1) not in labelled:
            missing.append(tag)
    return missing


def test_every_desk_page_has_a_plain_title_one_heading_and_labelled_fields(
    engine, settings, desk, tmp_path
):
    new_issue(engine, settings, tmp_path)
    import_readers(engine, tmp_path, 3)
    name = desk.settings.publication.name
    checked = []
    with closing(desk.signed_in()) as client:
        for method, path in desk_routes(desk.settings, engine):
            if method != "GET" or path.endswith((".csv", ".json", ".js")):
                continue
            page = client.get(path)
            if page.status_code != 200:
                continue  # the sign-in and reset forms send a signed-in editor on
            title = re.search(r"<title>([^<]*)</title>", page.text)
            assert title and title.group(1).endswith(f" – {name}"), (path, page.text[:400])
            assert page.text.count("<h1") == 1, path
            assert unlabelled_fields(page.text) == [], path
            checked.append(path)
    assert len(checked) >= 12, checked
