"""The desk's subscriber pages through real HTTP (uvicorn on 127.0.0.1, httpx): admins
only; search by address or name, filters, paging, one reader's consent and issues; and
an admin's changes: add, import a CSV upload, export, unsubscribe, purge. An editor who
is not an admin is refused each and changes nothing."""

from __future__ import annotations

import csv
import html
import io
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from markupsafe import escape
from sqlalchemy import Engine, insert, select, update

from deskclient import PASSWORD, Desk, csrf_of, sign_in
from mailer import editors
from mailer.models import (
    AUDIT_EVENTS,
    DELIVERIES,
    SUBSCRIBERS,
    TRANSACTIONAL_MAILS,
    AuditAction,
    EditorRole,
    utcnow,
)
from mailer.settings import Settings
from mailer.subscriber_csv import EXPORT_COLUMNS
from mailer.testing import (
    HOSTILE_NAMES,
    TEST_SECRET_KEY,
    import_readers,
    new_issue,
    run_mailer,
    served,
)

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


# --- an admin's changes ----------------------------------------------------------------


SUBSCRIBER_ACTIONS = {
    AuditAction.SUBSCRIBER_ADDED,
    AuditAction.SUBSCRIBERS_IMPORTED,
    AuditAction.SUBSCRIBERS_EXPORTED,
    AuditAction.SUBSCRIBER_UNSUBSCRIBED,
    AuditAction.SUBSCRIBER_PURGED,
}


def audit_rows(engine: Engine) -> list[tuple[str, str, str]]:
    """The audit log's (action, subject, detail) on subscribers, oldest first."""
    e = AUDIT_EVENTS.c
    with engine.connect() as connection:
        rows = connection.execute(select(e.action, e.subject, e.detail).order_by(e.id)).all()
    return [(a, s, d) for a, s, d in rows if a in SUBSCRIBER_ACTIONS]


def reader_row(engine: Engine, subscriber_id: int) -> dict[str, object]:
    with engine.connect() as connection:
        row = connection.execute(select(SUBSCRIBERS).where(SUBSCRIBERS.c.id == subscriber_id))
        return dict(row.one()._mapping)


def page_text(page: str) -> str:
    """A page's text as a person reads it: tags out, entities read, spaces squeezed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def test_filters_combine_with_the_search_and_are_kept_across_pages_and_in_the_export_link(
    engine, desk, tmp_path: Path
):
    import_readers(engine, tmp_path, 130)
    for n in range(0, 130, 2):  # the even ones read the weekly digest
        set_reader(engine, f"reader{n:03}@example.org", frequency="weekly")
    set_reader(engine, "reader010@example.org", status="bounced")
    with desk.client() as client:
        sign_in(client, ADMIN)
        asked = {"q": "reader", "status": "active", "frequency": "weekly"}
        first = client.get("/desk/subscribers", params=asked)
        assert "64 found" in first.text and "Page 1 of 2" in first.text
        assert "selected>weekly</option>" in first.text and "selected>active</option>" in first.text
        next_link = html.unescape(re.findall(r'<a href="([^"]+)" rel="next">', first.text)[0])
        assert "q=reader" in next_link and "status=active" in next_link
        assert "frequency=weekly" in next_link and "page=2" in next_link
        second = client.get(next_link)
        shown = listed(first.text) + listed(second.text)
        expected = [f"reader{n:03}@example.org" for n in range(128, -1, -2) if n != 10]
        assert shown == expected
        past_the_end = client.get("/desk/subscribers", params={**asked, "page": "7"})
        assert "Page 2 of 2" in past_the_end.text and listed(past_the_end.text) == expected[50:]
        unfiltered = client.get("/desk/subscribers", params={"status": "bounced", "page": "3"})
        assert listed(unfiltered.text) == ["reader010@example.org"]
        export = re.findall(r'<a href="(/desk/subscribers/export\.csv[^"]*)"', first.text)
        assert html.unescape(export[0]).endswith("?q=reader&status=active&frequency=weekly")


def test_an_admin_adds_a_reader_who_agreed_or_sends_them_a_confirmation_link(
    engine, settings, smtp, desk
):
    with desk.client() as client:
        sign_in(client, ADMIN)
        form = client.get("/desk/subscribers/add")
        assert form.status_code == 200 and 'name="consent"' in form.text
        token = csrf_of(form)
        agreed = client.post(
            "/desk/subscribers/add",
            data={"csrf": token, "email": " Kari@Example.ORG ", "name": "Kari Nordmann",
                  "frequency": "weekly", "consent": "given"},
        )  # fmt: skip
        assert agreed.status_code == 303
        kari = ids_by_address(engine)["kari@example.org"]
        assert agreed.headers["location"] == f"/desk/subscribers/{kari}?done=added"
        shown = page_text(client.get(agreed.headers["location"]).text)
        assert "Added." in shown and "kari@example.org" in shown and "active" in shown
        asked = client.post(
            "/desk/subscribers/add",
            data={"csrf": token, "email": "lena@example.org", "name": "",
                  "frequency": "every", "consent": "ask"},
        )  # fmt: skip
        assert asked.status_code == 303
        lena = ids_by_address(engine)["lena@example.org"]
        shown = page_text(client.get(asked.headers["location"]).text)
        assert "a confirmation link is on its way" in shown and "pending" in shown
        again = client.post(
            "/desk/subscribers/add",
            data={"csrf": token, "email": "KARI@example.org", "frequency": "every",
                  "consent": "given"},
        )  # fmt: skip
        assert again.status_code == 422
        assert "Not added: kari@example.org is already on the list (active)." in page_text(
            again.text
        )
        assert 'value="KARI@example.org"' in again.text  # the form as it was typed
        wrong = client.post(
            "/desk/subscribers/add",
            data={"csrf": token, "email": "not an address", "frequency": "every",
                  "consent": "given"},
        )  # fmt: skip
        assert wrong.status_code == 422 and "Not added:" in wrong.text
        undecided = client.post(
            "/desk/subscribers/add", data={"csrf": token, "email": "m@example.org"}
        )
        assert undecided.status_code == 422 and "already agreed" in undecided.text
    link = smtp.wait_for("lena@example.org")[0]
    assert "/confirm/" in link.get_body(("plain",)).get_content()
    kari_row, lena_row = reader_row(engine, kari), reader_row(engine, lena)
    assert (kari_row["status"], kari_row["frequency"], kari_row["name"]) == (
        "active", "weekly", "Kari Nordmann",
    )  # fmt: skip
    assert kari_row["confirmed_at"] is not None
    assert lena_row["status"] == "pending" and lena_row["confirmation_sent_at"] is not None
    assert set(ids_by_address(engine)) == {"kari@example.org", "lena@example.org"}
    assert audit_rows(engine) == [
        ("subscriber-added", f"subscriber {kari}", "added as active"),
        ("subscriber-added", f"subscriber {lena}", "added as pending, confirmation link sent"),
    ]


UPLOAD = (
    "email,name,status,frequency,notes\n"
    "new1@example.org,Nora One,,weekly,x\n"  # line 2
    "not-an-address,Someone,,,\n"  # 3
    "reader000@example.org,Already There,,,\n"  # 4: on the list
    "new2@example.org,,paused,,\n"  # 5: unknown status
    "NEW1@example.org,Nora Again,,,\n"  # 6: repeats line 2
    "new3@example.org,=HYPERLINK(1),,articles,\n"  # 7
    "new4@example.org,a,b,c,d,e\n"  # 8: too many fields
)


def test_an_admin_imports_a_csv_and_sees_every_bad_row_with_its_line_and_reason(
    engine, desk, tmp_path: Path
):
    import_readers(engine, tmp_path, 1)
    with desk.client() as client:
        sign_in(client, ADMIN)
        form = client.get("/desk/subscribers/import")
        assert 'enctype="multipart/form-data"' in form.text
        token = csrf_of(form)
        answer = client.post(
            "/desk/subscribers/import",
            data={"csrf": token},
            files={"file": ("readers.csv", UPLOAD.encode(), "text/csv")},
        )
        again = client.post(
            "/desk/subscribers/import",
            data={"csrf": token},
            files={"file": ("readers.csv", UPLOAD.encode(), "text/csv")},
        )
        not_text = client.post(
            "/desk/subscribers/import",
            data={"csrf": token},
            files={"file": ("list.xlsx", b"PK\x03\x04\xff\xfe", "application/vnd.ms-excel")},
        )
        no_file = client.post("/desk/subscribers/import", data={"csrf": token})
    assert answer.status_code == 200
    shown = page_text(answer.text)
    assert "Report: readers.csv" in shown
    assert "Imported 2; skipped 1 already on the list; rejected 4." in shown
    assert "Ignored columns: notes" in shown
    # the same file through `mailer subscribers import`: the same lines, the same words
    cli = tmp_path / "cli"
    cli.mkdir()
    (cli / "readers.csv").write_text(UPLOAD)
    env = {"MAILER_SECRET_KEY": TEST_SECRET_KEY,
           "MAILER_DATABASE_URL": f"sqlite:///{cli / 'cli.db'}"}  # fmt: skip
    assert run_mailer(cli, "subscribers", "add", "reader000@example.org", "--confirmed", **env)
    said = run_mailer(cli, "subscribers", "import", "readers.csv", **env)
    lines = [line for line in said.stderr.splitlines() if line.startswith("line ")]
    assert len(lines) == 5 and "line 4: skipped:" in said.stderr, said.stderr
    for line in lines:
        assert line in shown
    assert said.stdout.strip().splitlines()[-1] in shown
    assert "Imported 0; skipped 3 already on the list; rejected 4." in page_text(again.text)
    assert not_text.status_code == 422
    assert "list.xlsx is not UTF-8 text" in page_text(not_text.text)
    assert "/tmp" not in not_text.text and "mailer-import" not in not_text.text
    assert no_file.status_code == 422 and "Choose a CSV file" in no_file.text
    addresses = ids_by_address(engine)
    assert set(addresses) == {"reader000@example.org", "new1@example.org", "new3@example.org"}
    nora, hyper = (
        reader_row(engine, addresses["new1@example.org"]),
        reader_row(engine, addresses["new3@example.org"]),
    )
    assert (nora["name"], nora["frequency"], nora["status"]) == ("Nora One", "weekly", "active")
    assert (hyper["name"], hyper["frequency"]) == ("=HYPERLINK(1)", "articles")
    assert audit_rows(engine) == [
        ("subscribers-imported", "subscribers", "imported 2, skipped 1, rejected 4"),
        ("subscribers-imported", "subscribers", "imported 0, skipped 3, rejected 4"),
    ]


def test_the_export_is_the_filtered_list_as_the_cli_writes_it(engine, desk, tmp_path: Path):
    import_readers(engine, tmp_path, 5)
    set_reader(engine, "reader001@example.org", name="=SUM(A1:A9)", frequency="weekly")
    set_reader(engine, "reader002@example.org", frequency="weekly", status="bounced")
    set_reader(engine, "reader003@example.org", frequency="weekly")
    with desk.client() as client:
        sign_in(client, ADMIN)
        weekly = client.get("/desk/subscribers/export.csv", params={"frequency": "weekly"})
        searched = client.get(
            "/desk/subscribers/export.csv",
            params={"q": "reader003@example.org", "status": "active"},
        )
    assert weekly.status_code == 200 and weekly.headers["content-type"].startswith("text/csv")
    assert "attachment" in weekly.headers["content-disposition"]
    rows = list(csv.reader(io.StringIO(weekly.text)))
    assert rows[0] == list(EXPORT_COLUMNS)
    assert [(r[0], r[1], r[2], r[3]) for r in rows[1:]] == [
        ("reader001@example.org", "'=SUM(A1:A9)", "active", "weekly"),
        ("reader002@example.org", "", "bounced", "weekly"),
        ("reader003@example.org", "", "active", "weekly"),
    ]
    assert all(r[4] and r[5] for r in rows[1:3])  # created_at, confirmed_at
    assert [r[0] for r in csv.reader(io.StringIO(searched.text))] == [
        "email", "reader003@example.org",
    ]  # fmt: skip
    log = audit_rows(engine)
    assert log == [
        ("subscribers-exported", "subscribers", "3 rows (frequency weekly)"),
        ("subscribers-exported", "subscribers", "1 rows (status active, a search)"),
    ]
    assert "reader003" not in repr(log)


def test_an_admin_unsubscribes_a_reader_from_their_page(engine, desk, tmp_path: Path):
    import_readers(engine, tmp_path, 2)
    reader = ids_by_address(engine)["reader001@example.org"]
    with desk.client() as client:
        sign_in(client, ADMIN)
        page = client.get(f"/desk/subscribers/{reader}")
        assert f'action="/desk/subscribers/{reader}/unsubscribe"' in page.text
        left = client.post(f"/desk/subscribers/{reader}/unsubscribe", data={"csrf": csrf_of(page)})
        assert left.status_code == 303
        after = client.get(left.headers["location"])
        twice = client.post(f"/desk/subscribers/{reader}/unsubscribe", data={"csrf": csrf_of(page)})
        assert twice.status_code == 303
        missing = client.post("/desk/subscribers/99999/unsubscribe", data={"csrf": csrf_of(page)})
        assert missing.status_code == 404
    assert "Unsubscribed: they get no more issues." in page_text(after.text)
    assert f'action="/desk/subscribers/{reader}/unsubscribe"' not in after.text
    row = reader_row(engine, reader)
    assert row["status"] == "unsubscribed" and row["unsubscribed_at"] is not None
    assert reader_row(engine, ids_by_address(engine)["reader000@example.org"])["status"] == (
        "active"
    )
    assert audit_rows(engine) == [("subscriber-unsubscribed", f"subscriber {reader}", "")]


def test_a_purge_asks_first_then_erases_the_reader_and_keeps_their_deliveries(
    engine, settings, desk, tmp_path: Path
):
    import_readers(engine, tmp_path, 2)
    address = "reader001@example.org"
    reader = ids_by_address(engine)[address]
    set_reader(engine, address, name="Ingrid Solberg", consent_ip="198.51.100.7")
    issue = new_issue(engine, settings, tmp_path)
    with engine.begin() as connection:
        connection.execute(
            insert(DELIVERIES),
            [{"issue_id": issue.id, "subscriber_id": reader, "status": "failed", "attempts": 1,
              "smtp_response": f"550 5.1.1 <{address}>: User unknown"}],
        )  # fmt: skip
    with desk.client() as client:
        sign_in(client, ADMIN)
        page = client.get(f"/desk/subscribers/{reader}")
        assert f'href="/desk/subscribers/{reader}/purge"' in page.text
        ask = client.get(f"/desk/subscribers/{reader}/purge")
        assert ask.status_code == 200
        asked = page_text(ask.text)
        assert f"Purge {address}?" in asked and "cannot be undone" in asked
        assert "erased for good" in asked and f"Purge subscriber {reader}" in asked
        assert reader_row(engine, reader)["email"] == address  # asking changes nothing
        done = client.post(f"/desk/subscribers/{reader}/purge", data={"csrf": csrf_of(ask)})
        assert done.status_code == 303
        after = client.get(done.headers["location"])
        found = client.get("/desk/subscribers", params={"q": "reader001"})
        by_name = client.get("/desk/subscribers", params={"q": "Solberg"})
        again = client.get(f"/desk/subscribers/{reader}/purge")
    shown = page_text(after.text)
    assert f"Subscriber {reader} (erased)" in shown and "Purged:" in shown
    assert address not in after.text and "Solberg" not in after.text
    assert listed(found.text) == [] and listed(by_name.text) == []
    assert again.status_code == 303  # nothing left to purge
    row = reader_row(engine, reader)
    assert str(row["email"]).startswith("erased:hmac:")
    assert (row["name"], row["consent_ip"], row["status"]) == (None, None, "unsubscribed")
    with engine.connect() as connection:
        replies = (
            connection.execute(
                select(DELIVERIES.c.smtp_response).where(DELIVERIES.c.subscriber_id == reader)
            )
            .scalars()
            .all()
        )
        log = connection.execute(select(AUDIT_EVENTS)).all()
    assert replies == ["550 5.1.1 (reply erased with the subscriber)"]  # the delivery stays
    assert audit_rows(engine) == [("subscriber-purged", f"subscriber {reader}", "")]
    assert "reader001" not in repr(log) and "Solberg" not in repr(log)


def changeable(engine: Engine) -> list[object]:
    """What an admin's changes touch: the readers, the queued mail, the audit log."""
    with engine.connect() as connection:
        return [
            sorted(map(tuple, connection.execute(table.select()).all()), key=repr)
            for table in (SUBSCRIBERS, TRANSACTIONAL_MAILS, AUDIT_EVENTS)
        ]


def test_an_editor_who_is_not_admin_can_change_nothing(engine, desk, tmp_path: Path):
    import_readers(engine, tmp_path, 2)
    reader = ids_by_address(engine)["reader001@example.org"]
    with desk.client() as client:
        sign_in(client, EDITOR)
        token = csrf_of(client.get("/desk"))
        before = changeable(engine)
        pages = ["/desk/subscribers/add", "/desk/subscribers/import",
                 "/desk/subscribers/export.csv", f"/desk/subscribers/{reader}/purge"]  # fmt: skip
        for path in pages:
            refused = client.get(path)
            assert refused.status_code == 403 and "Not allowed" in refused.text, path
            assert "reader001" not in refused.text
        posts = {
            "/desk/subscribers/add": {"email": "x@example.org", "consent": "given"},
            f"/desk/subscribers/{reader}/unsubscribe": {},
            f"/desk/subscribers/{reader}/purge": {},
        }
        for path, fields in posts.items():
            refused = client.post(path, data={"csrf": token, **fields})
            assert refused.status_code == 403 and "Not allowed" in refused.text, path
        upload = client.post(
            "/desk/subscribers/import",
            data={"csrf": token},
            files={"file": ("readers.csv", b"email\nsneaky@example.org\n", "text/csv")},
        )
        assert upload.status_code == 403 and "Not allowed" in upload.text
        assert changeable(engine) == before
        assert client.get("/desk").status_code == 200  # still signed in


def test_an_admins_post_without_the_csrf_token_changes_nothing(engine, desk, tmp_path: Path):
    import_readers(engine, tmp_path, 1)
    reader = ids_by_address(engine)["reader000@example.org"]
    with desk.client() as client:
        sign_in(client, ADMIN)
        before = changeable(engine)
        for path, fields in {
            "/desk/subscribers/add": {"email": "x@example.org", "consent": "given"},
            f"/desk/subscribers/{reader}/unsubscribe": {},
            f"/desk/subscribers/{reader}/purge": {},
        }.items():
            assert client.post(path, data={"csrf": "guessed", **fields}).status_code == 403
        upload = client.post(
            "/desk/subscribers/import",
            files={"file": ("readers.csv", b"email\nsneaky@example.org\n", "text/csv")},
        )
        assert upload.status_code == 403
    assert changeable(engine) == before


def test_the_search_has_its_indexes_and_works_without_the_trigram_ones(engine, tmp_path: Path):
    """Migration 0011: the sign-up index everywhere, trigram indexes on PostgreSQL (where
    the server allows pg_trgm, as the test server does); without them a search still
    finds, reading every row."""
    from sqlalchemy import inspect, text

    from mailer.db import TRIGRAM_INDEXES
    from mailer.roster import Search, search_subscribers

    import_readers(engine, tmp_path, 3)
    names = {index["name"] for index in inspect(engine).get_indexes("subscriber")}
    assert "ix_subscriber_created_at" in names
    if engine.dialect.name == "postgresql":
        assert set(TRIGRAM_INDEXES) <= names
        with engine.begin() as connection:
            for name in TRIGRAM_INDEXES:
                connection.execute(text(f"DROP INDEX {name}"))
    found = search_subscribers(engine, Search(text="EADER001"))
    assert [s.email for s in found.subscribers] == ["reader001@example.org"]
