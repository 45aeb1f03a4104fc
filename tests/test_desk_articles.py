"""Articles at the desk, over real HTTP: bringing one in from a URL (a page, a feed)
served on 127.0.0.1, an uploaded file or pasted Markdown; the article's page with what
the cleaner left out, put back and taken out again; edits of the title, summary and date
that an issue made afterwards carries; and the audit rows each leaves."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlmodel import Session, col, select

from deskclient import csrf_of, sign_in
from mailer.demo import SAMPLE_ARTICLE
from mailer.errors import SourceError
from mailer.issues import article_issue
from mailer.models import Article, AuditAction, AuditEvent, Issue, IssueStatus, utcnow
from mailer.sources.blocks import left_out_of
from mailer.sources.reach import desk_reach
from mailer.testing import make_settings, served

DATA = Path(__file__).parent / "data" / "sources"
ARTICLE = "/desk/articles"


@pytest.fixture
def settings(tmp_path, smtp, database_url):
    """The tests' settings, fetching from the newsroom's own network allowed (the pages
    are served on 127.0.0.1)."""
    return make_settings(
        tmp_path, smtp.port, database_url, sources={"allow_private_addresses": True}
    )


@dataclass
class Site:
    """A web site on 127.0.0.1: `documents[path] = (content, content type)`, and the paths
    asked for, in order."""

    url: str = ""
    documents: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)


@pytest.fixture
def site() -> Iterator[Site]:
    served_site = Site()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served_site.asked.append(self.path)
            if self.path not in served_site.documents:
                self.send_error(404)
                return
            content, kind = served_site.documents[self.path]
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(content)))
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    served_site.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield served_site
    server.shutdown()
    server.server_close()


def articles(engine) -> list[Article]:
    with Session(engine) as session:
        return list(session.exec(select(Article).order_by(col(Article.id))).all())


def audit(engine, action: AuditAction) -> list[AuditEvent]:
    with Session(engine) as session:
        query = select(AuditEvent).where(AuditEvent.action == action)
        return list(session.exec(query.order_by(col(AuditEvent.id))).all())


def post(client: httpx.Client, path: str, page_path: str = ARTICLE, **kwargs) -> httpx.Response:
    """A POST from the form on `page_path`, with that page's CSRF token."""
    token = csrf_of(client.get(page_path))
    data = {"csrf": token, **kwargs.pop("data", {})}
    return client.post(path, data=data, **kwargs)


def upload(client: httpx.Client, name: str, content: bytes) -> httpx.Response:
    return post(client, f"{ARTICLE}/upload", files={"file": (name, content)})


def landed(client: httpx.Client, answer: httpx.Response) -> httpx.Response:
    """The page a 303 after a POST leads to."""
    assert answer.status_code == 303, answer.text
    return client.get(answer.headers["location"])


def test_an_article_comes_in_from_a_page_and_from_a_feed_served_on_127_0_0_1(engine, desk, site):
    site.documents["/story/"] = ((DATA / "wordpress-article.html").read_bytes(), "text/html")
    site.documents["/feed/"] = ((DATA / "wordpress-feed.xml").read_bytes(), "application/rss+xml")
    with closing(desk.signed_in()) as client:
        answer = post(client, f"{ARTICLE}/from-url", data={"url": f"{site.url}/story/"})
        page = landed(client, answer)
        assert page.status_code == 200 and "Brought in." in page.text
        assert "Lavrov’s Dual-Message" in page.text and "Preview and send" in page.text
        [stored] = articles(engine)
        assert answer.headers["location"].startswith(f"{ARTICLE}/{stored.id}?")
        assert stored.url == "https://dawatmedia.example/2025/10/08/lavrovs-dual-message/"
        story = {"url": f"{site.url}/story/"}
        again = landed(client, post(client, f"{ARTICLE}/from-url", data=story))
        assert "already here, with the same text: nothing was changed" in again.text
        assert again.url.path == f"{ARTICLE}/{stored.id}"
        feed = post(client, f"{ARTICLE}/from-url", data={"url": f"{site.url}/feed/"})
        page = landed(client, feed)
        assert "This is the feed's newest article. Its 2 other articles are in" in page.text
        # the page is the feed's first entry too (its canonical address is the entry's link)
        assert len(articles(engine)) == 3
    added = audit(engine, AuditAction.ARTICLE_ADDED)
    assert {event.subject for event in added} == {f"article {a.id}" for a in articles(engine)}
    assert added[0].detail == f"from {site.url}/story/" and added[0].editor_id is not None


def test_the_desk_refuses_a_url_on_this_machine_unless_private_addresses_are_allowed(
    engine, settings, desk, site
):
    site.documents["/story/"] = ((DATA / "wordpress-article.html").read_bytes(), "text/html")
    closed = settings.replace(sources={"allow_private_addresses": False})
    with served(closed, engine) as (url, _running), httpx.Client(base_url=url) as client:
        sign_in(client)
        answer = post(client, f"{ARTICLE}/from-url", data={"url": f"{site.url}/story/"})
    assert answer.status_code == 400
    assert "127.0.0.1 is a loopback address" in answer.text
    assert "allow_private_addresses = true" in answer.text
    assert f'value="{site.url}/story/"' in answer.text  # the address typed stays in the form
    assert articles(engine) == [] and audit(engine, AuditAction.ARTICLE_ADDED) == []
    assert site.asked == []  # refused before connecting


def test_uploads_of_each_kind_come_in_and_hostile_html_is_sanitised(engine, desk):
    hostile = (
        b"<html><head><title>Council budget</title></head><body><article>"
        b"<h1>Council budget</h1><script>alert('x')</script>"
        b'<p onclick="steal()">The council agreed on the budget for next year after a long'
        b' debate.</p><p><a href="javascript:alert(1)">A link</a> and '
        b'<img src="https://news.example/a.png" onerror="steal()" alt="a chart"></p>'
        b'<iframe src="https://evil.example/"></iframe></article></body></html>'
    )
    files = {
        "note.txt": "Harbour reopens\n\nThe harbour reopened on Monday after the storm.\n",
        "post.md": "# Bridge news\n\nThe **bridge** is open again after repairs.\n",
    }
    with closing(desk.signed_in()) as client:
        for name, text in files.items():
            page = landed(client, upload(client, name, text.encode()))
            assert "Brought in." in page.text
        page = landed(client, upload(client, "budget.html", hostile))
    texts = [(a.title, a.body_html) for a in articles(engine)]
    assert texts[0] == ("Harbour reopens", "<p>The harbour reopened on Monday after the storm.</p>")
    assert texts[1] == (
        "Bridge news",
        "<p>The <strong>bridge</strong> is open again after repairs.</p>",
    )
    title, body = texts[2]
    assert title == "Council budget" and "The council agreed on the budget" in body
    for shown in (body, page.text.split("as readers will see it")[1]):
        for bad in (
            "<script",
            "alert(",
            "onclick",
            "onerror",
            "javascript:",
            "<iframe",
            "evil.example",
        ):
            assert bad not in shown
    assert 'alt="a chart"' in body
    assert len(audit(engine, AuditAction.ARTICLE_ADDED)) == 3


def test_a_wrong_file_type_or_an_undecodable_file_is_refused_and_nothing_is_stored(engine, desk):
    with closing(desk.signed_in()) as client:
        pdf = upload(client, "report.pdf", b"%PDF-1.4 binary")
        assert pdf.status_code == 400
        assert "report.pdf is not a file the desk reads: upload the article as a .txt" in pdf.text
        binary = upload(client, "notes.txt", b"\x00\x01\x02\xff\xfe binary \x00")
        assert binary.status_code == 400 and 'role="alert"' in binary.text
        assert "notes.txt" in binary.text
        empty = upload(client, "empty.md", b"")
        assert empty.status_code == 400 and "empty.md is empty" in empty.text
    assert articles(engine) == [] and audit(engine, AuditAction.ARTICLE_ADDED) == []


def test_pasted_markdown_comes_in_with_its_title_and_a_second_paste_is_the_same_article(
    engine, desk
):
    markdown = "The *ferry* timetable changes on Monday.\n\n## What changes\n\n- Earlier boat\n"
    form = {"title": "Ferry timetable", "markdown": markdown}
    with closing(desk.signed_in()) as client:
        page = landed(client, post(client, f"{ARTICLE}/paste", data=form))
        assert "<h1>Ferry timetable</h1>" in page.text
        assert "<em>ferry</em>" in page.text and "<li>Earlier boat</li>" in page.text
        again = landed(client, post(client, f"{ARTICLE}/paste", data=form))
        assert "This article was already here" in again.text
        empty = post(client, f"{ARTICLE}/paste", data={"title": "x", "markdown": "  "})
        assert empty.status_code == 400 and "Paste the article" in empty.text
    [article] = articles(engine)
    assert again.url.path == f"{ARTICLE}/{article.id}"
    assert article.source == "markdown:pasted.md"
    assert len(audit(engine, AuditAction.ARTICLE_ADDED)) == 1


def test_what_the_cleaner_left_out_of_the_sample_shows_and_can_be_put_back_and_taken_out(
    engine, settings, desk
):
    with closing(desk.signed_in()) as client:
        page = landed(client, upload(client, SAMPLE_ARTICLE.name, SAMPLE_ARTICLE.read_bytes()))
        [article] = articles(engine)
        left = page.text.split("What the cleaner left out")[1]
        assert "Comments are closed." in left and "Vipps: #557320" in left
        assert "Comments are closed." not in page.text.split("What the cleaner left out")[0]
        last = len(left_out_of(article.left_out)) - 1
        key = left_out_of(article.left_out)[last]
        path = f"{ARTICLE}/{article.id}"
        form = {"index": str(last), "key": _key(key.html)}
        back = landed(client, post(client, f"{path}/put-back", path, data=form))
        assert "The paragraph is back in the body" in back.text
        body = back.text.split("as readers will see it")[1].split("What the cleaner left out")[0]
        assert "Comments are closed." in body
        stale = post(client, f"{path}/put-back", path, data=form)  # the same form again
        assert stale.status_code == 400 and "changed since this page was shown" in stale.text
        first = _body_block(engine, article.id, 0)
        out = landed(
            client, post(client, f"{path}/take-out", path, data={"index": "0", "key": _key(first)})
        )
        assert "The paragraph is out of the body" in out.text
    stored = articles(engine)[0]
    assert stored.body_html.endswith("<p>Comments are closed.</p>")
    assert first not in stored.body_html
    assert left_out_of(stored.left_out)[0].html == first
    assert stored.fingerprint == article.fingerprint  # edits never change what names the source
    issue = article_issue(engine, settings, stored)
    assert "Comments are closed." in issue.html and "Comments are closed." in issue.text
    edits = audit(engine, AuditAction.ARTICLE_EDITED)
    assert [e.subject for e in edits] == [f"article {article.id}"] * 2
    assert edits[0].detail == "put back in the body: “Comments are closed.”"
    assert edits[1].detail.startswith("taken out of the body: “")


def _key(block_html: str) -> str:
    from mailer.articles import block_key

    return block_key(block_html)


def _body_block(engine, article_id: int, index: int) -> str:
    from mailer.sources.blocks import body_blocks

    with Session(engine) as session:
        article = session.get(Article, article_id)
        assert article is not None
        return body_blocks(article.body_html)[index]


def test_edits_change_the_issue_made_afterwards_and_the_page_says_sent_issues_stay(
    engine, settings, desk
):
    with closing(desk.signed_in()) as client:
        page = landed(client, upload(client, SAMPLE_ARTICLE.name, SAMPLE_ARTICLE.read_bytes()))
        [article] = articles(engine)
        path = f"{ARTICLE}/{article.id}"
        # the date as the form shows it (to the minute) is no change of the date
        shown = re.search(r'name="published" required value="([^"]+)"', page.text)
        assert shown is not None and article.published_at is not None
        form = {"title": "Moscow talks: what was agreed", "summary": "Who met, and what for.",
                "published": shown.group(1)}  # fmt: skip
        saved = landed(client, post(client, f"{path}/edit", path, data=form))
        assert "Saved." in saved.text and "<h1>Moscow talks: what was agreed</h1>" in saved.text
        assert articles(engine)[0].published_at == article.published_at
        form["published"] = "2026-11-30T09:15"
        dated = landed(client, post(client, f"{path}/edit", path, data=form))
        assert "Saved." in dated.text and 'value="2026-11-30T09:15"' in dated.text
        assert "already sent" not in dated.text
        same = landed(client, post(client, f"{path}/edit", path, data=form))
        assert "Nothing was changed" in same.text
        bad = post(client, f"{path}/edit", path, data={**form, "published": "soon"})
        assert bad.status_code == 400 and "“soon” is not a date and time" in bad.text
        untitled = post(client, f"{path}/edit", path, data={**form, "title": "  "})
        assert untitled.status_code == 400 and "The title cannot be empty" in untitled.text
        stored = articles(engine)[0]
        issue = article_issue(engine, settings, stored)  # made after the edits
        assert issue.subject == "Moscow talks: what was agreed"
        assert "Moscow talks: what was agreed" in issue.html
        with Session(engine) as session:  # it went out
            sent = session.get(Issue, issue.id)
            assert sent is not None
            sent.status, sent.sent_at = IssueStatus.SENT, utcnow()
            session.add(sent)
            session.commit()
        page = client.get(path)
        assert "Changes here do not change issues already sent" in page.text
        assert f'href="/desk/issues/{issue.id}"' in page.text
    local = stored.published_at.astimezone(ZoneInfo(settings.publication.timezone))
    assert local.strftime("%Y-%m-%d %H:%M") == "2026-11-30 09:15"
    assert stored.summary == "Who met, and what for." and stored.fingerprint == article.fingerprint
    edits = audit(engine, AuditAction.ARTICLE_EDITED)
    assert [e.subject for e in edits] == [f"article {article.id}"] * 2
    assert [e.detail for e in edits] == ["changed title, summary", "changed date"]


def test_an_upload_without_the_sessions_csrf_token_stores_nothing(engine, desk):
    with closing(desk.signed_in()) as client:
        files = {"file": ("note.txt", b"The harbour reopened on Monday after the storm.")}
        answer = client.post(f"{ARTICLE}/upload", data={"csrf": "guessed"}, files=files)
        assert answer.status_code == 403
        assert client.get("/desk/articles/1").status_code == 404
    assert articles(engine) == []


def test_a_desk_fetch_checks_the_host_it_is_given_and_every_connection_after():
    """Unlike `mailer ingest` on the editor's own machine, the desk fetches on the
    server: a name of the newsroom's network is refused, and a public one is checked at
    every connection (a redirect, a name that changes to 127.0.0.1 a moment later)."""
    intranet = {"intranet.example": ["10.0.0.5"], "news.example": ["93.184.215.14"]}

    def resolve(host: str) -> list[str]:
        return intranet[host]

    with pytest.raises(SourceError) as refused:
        desk_reach("http://intranet.example/feed/", False, resolve)
    assert str(refused.value).startswith(
        "http://intranet.example/feed/: intranet.example (10.0.0.5) is a private address. "
        "The desk does not fetch from this server"
    )
    assert desk_reach("http://intranet.example/feed/", True, resolve).private_ok
    public = desk_reach("https://news.example/feed/", False, resolve)
    assert not public.private_ok and not public.local_origin
    intranet["news.example"] = ["127.0.0.1"]  # rebinding after the check
    with pytest.raises(SourceError, match="a loopback address"):
        public.addresses("news.example")
