"""The desk's subscriber pages through real HTTP (uvicorn on 127.0.0.1, httpx): admins
only; search by address or name, filters, paging, one reader's consent and issues."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from markupsafe import escape
from sqlalchemy import Engine, insert, select, update

from deskclient import PASSWORD, Desk, sign_in
from mailer import editors
from mailer.models import DELIVERIES, SUBSCRIBERS, EditorRole, utcnow
from mailer.settings import Settings
from mailer.testing import HOSTILE_NAMES, import_readers, new_issue, served

ADMIN = "ann@newsroom.example"
EDITOR = "bob@newsroom.example"
ROW = re.compile(r'<a href="/desk/subscribers/(\d+)">([^<]+)</a>')


@pytest.fixture
def desk(engine: Engine, settings: Settings) -> Iterator[Desk]:
    editors.add_editor(engine, ADMIN, PASSWORD, EditorRole.ADMIN)
    editors.add_editor(engine, EDITOR, PASSWORD, EditorRole.EDITOR)
    with served(settings, engine) as (url, running):
        yield Desk(url, running)


def ids_by_address(engine: Engine) -> dict[str, int]:
    with engine.connect() as connection:
        rows = connection.execute(select(SUBSCRIBERS.c.email, SUBSCRIBERS.c.id))
        return {email: int(i) for email, i in rows}


def set_reader(engine: Engine, address: str, **values: object) -> None:
    with engine.begin() as connection:
        connection.execute(
            update(SUBSCRIBERS).where(SUBSCRIBERS.c.email == address).values(**values)
        )


def listed(page: str) -> list[str]:
    return [html.unescape(address) for _, address in ROW.findall(page)]


def test_an_editor_who_is_not_admin_is_refused_and_sees_no_subscribers_link(
    engine, desk, tmp_path: Path
):
    import_readers(engine, tmp_path, 1)
    reader = ids_by_address(engine)["reader000@example.org"]
    with desk.client() as client:
        sign_in(client, EDITOR)
        board = client.get("/desk")
        assert board.status_code == 200 and "Subscribers" not in board.text
        for path in ("/desk/subscribers", f"/desk/subscribers/{reader}"):
            refused = client.get(path)
            assert refused.status_code == 403
            assert "reader000" not in refused.text and "Not allowed" in refused.text
        assert client.get("/desk").status_code == 200  # still signed in
    with desk.client() as client:  # no session: the sign-in form, as every desk page
        for path in ("/desk/subscribers", f"/desk/subscribers/{reader}"):
            answer = client.get(path)
            assert answer.status_code == 303 and answer.headers["location"] == "/desk/login"


def test_an_admin_searches_filters_and_pages_through_the_readers(engine, desk, tmp_path: Path):
    addresses = import_readers(engine, tmp_path, 120)
    set_reader(engine, "reader007@example.org", name="Ingrid Solberg")
    set_reader(engine, "reader042@example.org", status="unsubscribed")
    set_reader(engine, "reader043@example.org", status="unsubscribed", frequency="weekly")
    with desk.client() as client:
        sign_in(client, ADMIN)
        board = client.get("/desk")
        assert '<a href="/desk/subscribers">Subscribers</a>' in board.text

        first = client.get("/desk/subscribers")
        assert first.status_code == 200 and "120 found" in first.text
        assert listed(first.text) == addresses[::-1][:50]  # newest first
        assert "Page 1 of 3" in first.text and "Previous</a>" not in first.text
        pages = [listed(first.text)]
        next_link = re.search(r'<a href="([^"]+)" rel="next">', first.text)
        while next_link:
            page = client.get(html.unescape(next_link.group(1)))
            pages.append(listed(page.text))
            next_link = re.search(r'<a href="([^"]+)" rel="next">', page.text)
        assert [len(p) for p in pages] == [50, 50, 20]
        assert [a for p in pages for a in p] == addresses[::-1]
        assert 'rel="prev"' in page.text and "Page 3 of 3" in page.text

        by_address = client.get("/desk/subscribers", params={"q": "EADER11"})
        assert listed(by_address.text) == [f"reader11{n}@example.org" for n in range(9, -1, -1)]
        by_name = client.get("/desk/subscribers", params={"q": "ingrid sol"})
        assert listed(by_name.text) == ["reader007@example.org"]
        assert "Ingrid Solberg" in by_name.text
        literal = client.get("/desk/subscribers", params={"q": "%"})
        assert listed(literal.text) == []
        odd = client.get("/desk/subscribers", params={"page": "²", "status": "nonsense"})
        assert odd.status_code == 200 and "Page 1 of 3" in odd.text
        assert odd.headers["cache-control"] == "no-store"

        left = client.get("/desk/subscribers", params={"status": "unsubscribed"})
        assert listed(left.text) == ["reader043@example.org", "reader042@example.org"]
        assert "active 118" in left.text and "unsubscribed 2" in left.text
        weekly = client.get(
            "/desk/subscribers", params={"status": "unsubscribed", "frequency": "weekly"}
        )
        assert listed(weekly.text) == ["reader043@example.org"]


def test_an_admin_opens_a_readers_page_with_their_consent_and_issues(
    engine, settings, desk, tmp_path: Path
):
    import_readers(engine, tmp_path, 2)
    reader = ids_by_address(engine)["reader001@example.org"]
    confirmed = utcnow() - timedelta(days=3)
    set_reader(engine, "reader001@example.org", confirmed_at=confirmed, consent_ip="198.51.100.7")
    first, second = (new_issue(engine, settings, tmp_path, n) for n in (1, 2))
    with engine.begin() as connection:
        connection.execute(
            insert(DELIVERIES),
            [
                {"issue_id": first.id, "subscriber_id": reader, "status": "sent",
                 "attempts": 1, "sent_at": utcnow() - timedelta(days=2), "first_attempt_at": None},
                {"issue_id": second.id, "subscriber_id": reader, "status": "deferred",
                 "attempts": 1, "sent_at": None, "first_attempt_at": utcnow() - timedelta(days=1)},
            ],
        )  # fmt: skip
    with desk.client() as client:
        sign_in(client, ADMIN)
        listing = client.get("/desk/subscribers", params={"q": "reader001"})
        assert f'href="/desk/subscribers/{reader}"' in listing.text
        page = client.get(f"/desk/subscribers/{reader}")
        assert client.get("/desk/subscribers/999999").status_code == 404
    assert page.status_code == 200
    text = page.text
    assert "reader001@example.org" in text and "198.51.100.7" in text
    zone = ZoneInfo(settings.publication.timezone)
    assert confirmed.astimezone(zone).strftime("%a %d %b %Y %H:%M") in text
    rows = re.findall(r"<tr><td>(\d+): (.*?)</td><td>(\w+)</td>", text)
    assert rows == [
        (str(second.id), str(escape(second.subject)), "deferred"),
        (str(first.id), str(escape(first.subject)), "sent"),
    ]


def test_hostile_names_are_escaped(engine, desk, tmp_path: Path):
    planted = "<script>alert(1)</script>"
    names = [name.replace("\x00", "") for name in HOSTILE_NAMES] + [planted]  # PostgreSQL: no NUL
    import_readers(engine, tmp_path, len(names))
    for n, name in enumerate(names):
        set_reader(engine, f"reader{n:03}@example.org", name=name)
    ids = ids_by_address(engine)
    with desk.client() as client:
        sign_in(client, ADMIN)
        listing = client.get("/desk/subscribers").text
        pages = [client.get(f"/desk/subscribers/{ids[f'reader{n:03}@example.org']}").text
                 for n in (0, len(names) - 1)]  # fmt: skip
    for name in names:
        assert str(escape(name)) in listing
    for page in (listing, *pages):
        assert planted not in page and "<attacker@evil.example>" not in page
    assert str(escape(names[0])) in pages[0] and str(escape(planted)) in pages[1]
