"""Article sources: RSS, Atom, web pages and Markdown, read from committed fixtures in the
shapes WordPress, Ghost, Blogger and a Persian news site produce, and over real HTTP from
a server on 127.0.0.1; every sanitiser rule checked in the stored article and in the
rendered email; the sample article gives the same body from text, Markdown and a page."""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
import ssl
import subprocess
import threading
import tracemalloc
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from sqlmodel import Session, select

from mailer.articles import boilerplate, ingest_source
from mailer.demo import SAMPLE_ARTICLE
from mailer.errors import SourceError
from mailer.models import Article
from mailer.render import render_article_issue
from mailer.scheduler import Service
from mailer.sources import read_article, read_source
from mailer.sources.reach import (
    GuardedTransport,
    NonPublicAddress,
    Reach,
    is_public,
    system_resolver,
)
from mailer.subscribers import add_subscriber
from mailer.testing import commands
from mailer.testing.certs import self_signed
from mailer.watches import FolderWatch
from test_crash import _environment

DATA = Path(__file__).parent / "data" / "sources"


def rules(settings: Any) -> Any:
    return boilerplate(settings)


def test_the_sample_gives_the_same_body_from_text_markdown_and_a_page(settings):
    text = read_article(SAMPLE_ARTICLE, rules(settings))
    markdown = read_source(str(DATA / "moscow-format-article.md"), rules(settings)).drafts[0]
    page = read_source(str(DATA / "wordpress-article.html"), rules(settings)).drafts[0]
    assert markdown.body_html == text.body_html
    figure, rest = page.body_html.split("\n", 1)  # the page also has the photo
    assert rest == text.body_html and figure.startswith("<figure>")
    assert text.title == markdown.title == page.title
    assert markdown.url == page.url == "https://dawatmedia.example/2025/10/08/lavrovs-dual-message/"
    assert markdown.author == page.author == "Dawat Staff"
    assert markdown.published_at == page.published_at
    assert (
        page.published_at is not None
        and page.published_at.isoformat() == "2025-10-08T09:30:00+00:00"
    )
    for left_out in ("Share this", "Kabul talks", "Comments are closed", "Donate", "Privacy"):
        assert left_out not in page.body_html


def test_a_wordpress_feed_gives_each_entry_without_the_sites_furniture(settings):
    read = read_source(str(DATA / "wordpress-feed.xml"), rules(settings))
    assert read.problems == []
    lavrov, budget, undated = read.drafts
    assert lavrov.title == "Lavrov’s Dual-Message: Praise for Taliban, a Warning to the West"
    assert lavrov.guid == "https://dawatmedia.example/?p=4172"  # the feed's guid
    assert lavrov.url == "https://dawatmedia.example/2025/10/08/lavrovs-dual-message/"
    assert lavrov.author == "Dawat Staff"
    assert (
        lavrov.published_at is not None
        and lavrov.published_at.isoformat() == "2025-10-08T09:30:00+00:00"
    )
    # the fullest body: content:encoded, not the excerpt
    assert "Lavrov praised the Taliban’s campaign" in lavrov.body_html
    body = lavrov.body_html
    for gone in (
        "appeared first on",
        "Share this",
        "If there were ever",
        "557320",
        "Support Dawat",
    ):
        assert gone not in body
    assert lavrov.summary.startswith("MOSCOW – In a significant move")
    # an excerpt-only entry: no "Continue reading", no WordPress footer
    assert budget.body_html == (
        "<p>The de facto government published a budget for the first time in two years. "
        "What it says about revenue, aid and the provinces.</p>"
    )
    assert undated.published_at is None
    assert undated.body_html == (
        "<p>Plain text description with an entity &amp; no markup at all, long enough to be "
        "a paragraph.</p>"
    )


def test_ghost_and_blogger_feeds(settings):
    ghost = read_source(str(DATA / "ghost-feed.xml"), rules(settings)).drafts[0]
    assert ghost.summary == "A year of donor reports, read line by line."  # the feed's own
    assert "<h2>The numbers</h2>" in ghost.body_html and "<h1" not in ghost.body_html
    assert "<blockquote><p>“We could not follow" in ghost.body_html
    assert '<a href="https://ledger.example/data/aid-2025.csv"' in ghost.body_html
    assert '<a href="mailto:tips@ledger.example"' in ghost.body_html
    for gone in ("iframe", "youtube", "<form", "<input", "Subscribe"):
        assert gone not in ghost.body_html
    blogger = read_source(str(DATA / "blogger-atom.xml"), rules(settings)).drafts[0]
    assert blogger.title == "Water & wheat in the western provinces"
    assert blogger.guid == "tag:blogger.com,1999:blog-1234567890.post-555"
    assert blogger.published_at is not None
    assert blogger.published_at.isoformat() == "2025-10-05T13:45:00+00:00"
    assert 'src="https://herat-notes.example/2025/10/field.jpg"' in blogger.body_html  # xml:base
    assert 'width="520"' in blogger.body_html  # scaled to the column
    assert 'height="390"' in blogger.body_html
    assert "last year's wheat" in blogger.body_html and "&amp;nbsp;" not in blogger.body_html
    assert blogger.summary.startswith("The drought has moved east. Farmers")


def test_a_persian_article_is_stored_with_its_language_and_laid_out_right_to_left(engine, settings):
    report = ingest_source(engine, settings, str(DATA / "persian-feed.xml"))
    article = report.results[0].article
    assert article.language == "fa-IR"
    html = render_article_issue(settings, article).html
    assert 'lang="fa-IR" dir="rtl"' in html
    body = html.rindex("روسیه روز سه‌شنبه")  # the article, after the preheader
    appeal = html.index("Support Dawat Media Center")
    assert html.index('dir="rtl"') < body < appeal
    # the appeal and the footer stay in the publication's language and direction
    assert 'dir="rtl"' not in html[appeal:]
    assert '<html lang="en" dir="ltr"' in html


def test_an_rtl_article_is_recognised_by_its_letters_when_nothing_declares_it(settings, tmp_path):
    path = tmp_path / "pashto.md"
    path.write_text(
        "# د مسکو خبرې\n\n"
        "د روسیې بهرنیو چارو وزیر ښاغلي لاوروف وویل چې بهرنۍ پوځي شتون نه منل کېږي.\n"
    )
    assert read_source(str(path), rules(settings)).drafts[0].language == "ps"
    path.write_text("# Title\n\nAn English paragraph with nothing else in it at all.\n")
    assert read_source(str(path), rules(settings)).drafts[0].language is None


HOSTILE = """<!DOCTYPE html><html><head><title>Hostile</title><style>p{color:red}</style></head>
<body><article><h1>Hostile page</h1>
<p>Opening paragraph with enough words to be the article's text, and a
<a href="/relative/link">relative link</a>.</p>
<script>steal(document.cookie)</script>
<p onclick="steal()" style="background:url(javascript:steal())">Handler paragraph.</p>
<p><a href="javascript:steal()">script link</a> <a href="data:text/html,evil">data link</a>
<a href="vbscript:evil">vb link</a></p>
<p><img src="javascript:steal()" alt="x"><img src="data:image/png;base64,AAAA" alt="y">
<img src="https://track.example/pixel.gif" width="1" height="1">
<img src="/photo.jpg" title="A photo title" width="1600" height="900"></p>
<iframe src="https://evil.example/frame"></iframe>
<object data="evil.swf"></object><embed src="evil.swf">
<form action="https://evil.example/"><input name="card"><button>Pay</button></form>
<svg onload="steal()"><script>steal()</script></svg>
<p>Closing paragraph.</p></article></body></html>"""


def test_every_sanitiser_rule_holds_in_the_stored_article_and_the_email(engine, settings, tmp_path):
    page = tmp_path / "hostile.html"
    page.write_text(HOSTILE, encoding="utf-8")
    ingest_source(engine, settings, str(page), url="https://news.example/2025/hostile/")
    with Session(engine) as session:
        article = session.exec(select(Article)).one()
    email = render_article_issue(settings, article).html
    for html in (article.body_html, email):
        lowered = html.lower()
        for gone in ("<script", "steal", "onclick", "onload", "javascript:", "vbscript:",
                     "data:", "<iframe", "<object", "<embed", "<form", "<input", "<svg",
                     "pixel.gif", "color:red"):  # fmt: skip
            assert gone not in lowered, gone
        assert '<a href="https://news.example/relative/link"' in html
        assert 'src="https://news.example/photo.jpg"' in html
    body = article.body_html
    assert 'width="520"' in body and 'height="292"' in body and 'alt="A photo title"' in body
    assert "<h1" not in body and "Handler paragraph." in body and "Closing paragraph." in body
    assert "script link" in body  # the words stay, the link goes


@dataclass
class Site:
    """A web server on 127.0.0.1 serving fixed documents, with ETag and 304s; `encodings`
    sends a document's bytes as they are under a Content-Encoding."""

    documents: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    encodings: dict[str, str] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> Location
    dated: set[str] = field(default_factory=set)  # paths with Last-Modified, not an ETag
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def site() -> Iterator[Site]:
    served = Site()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            served.requests.append((self.path, dict(self.headers)))
            if self.path.startswith("/loop"):
                self.send_response(302)
                self.send_header("Location", f"/loop{len(served.requests)}")
                self.end_headers()
                return
            if self.path in served.redirects:
                self.send_response(302)
                self.send_header("Location", served.redirects[self.path])
                self.end_headers()
                return
            if self.path not in served.documents:
                self.send_error(404, "Not Found")
                return
            content, kind = served.documents[self.path]
            etag = f'"{hash(content) & 0xFFFFFFFF:x}"'
            modified = format_datetime(datetime(2026, 1, 1, tzinfo=UTC), usegmt=True)
            if self.path in served.dated:
                etag, same = "", self.headers.get("If-Modified-Since") == modified
            else:
                same = self.headers.get("If-None-Match") == etag
            if same:
                self.send_response(304)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(content)))
            if etag:
                self.send_header("ETag", etag)
            else:
                self.send_header("Last-Modified", modified)
            if self.path in served.encodings:
                self.send_header("Content-Encoding", served.encodings[self.path])
            self.end_headers()
            self.wfile.write(content)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served
    server.shutdown()
    server.server_close()


def test_a_feed_over_http_is_fetched_again_only_when_it_changed(engine, settings, site):
    feed = (DATA / "wordpress-feed.xml").read_bytes()
    site.documents["/feed/"] = (feed, "application/rss+xml; charset=UTF-8")
    first = ingest_source(engine, settings, site.url("/feed/"), conditional=True)
    assert [r.outcome for r in first.results] == ["new", "new", "new"]
    again = ingest_source(engine, settings, site.url("/feed/"), conditional=True)
    assert again.not_modified and again.results == []
    assert site.requests[-1][1].get("If-None-Match")  # asked with the remembered ETag
    assert "mailer/" in site.requests[-1][1]["User-Agent"]
    changed = feed.replace(b"What it says about revenue", b"What it says about income")
    site.documents["/feed/"] = (changed, "application/rss+xml")
    third = ingest_source(engine, settings, site.url("/feed/"), conditional=True)
    assert [r.outcome for r in third.results] == ["unchanged", "updated", "unchanged"]
    with Session(engine) as session:
        assert len(session.exec(select(Article)).all()) == 3


def test_a_page_over_http_and_full_text_for_a_feed_of_excerpts(engine, settings, site):
    page = (DATA / "wordpress-article.html").read_bytes()
    site.documents["/2025/10/08/lavrovs-dual-message/"] = (page, "text/html; charset=utf-8")
    excerpts = (DATA / "wordpress-feed.xml").read_text(encoding="utf-8")
    excerpts = excerpts.replace(
        "https://dawatmedia.example/2025/10/08/lavrovs-dual-message/</link>",
        site.url("/2025/10/08/lavrovs-dual-message/") + "</link>",
    )
    start, end = excerpts.index("<content:encoded>"), excerpts.index("</content:encoded>")
    excerpts = excerpts[:start] + excerpts[end + len("</content:encoded>") :]
    site.documents["/feed/"] = (excerpts.encode(), "application/rss+xml")
    read = read_source(site.url("/feed/"), rules(settings), full_text=True)
    lavrov = read.drafts[0]
    assert "Regional Engagement and Unresolved Tensions" in lavrov.body_html  # the whole page
    assert lavrov.guid == "https://dawatmedia.example/?p=4172"
    one = read_source(site.url("/2025/10/08/lavrovs-dual-message/"), rules(settings))
    assert one.drafts[0].title.startswith("Lavrov’s Dual-Message")


@pytest.mark.parametrize(
    ("path", "document", "reason"),
    [
        ("/missing", None, "the server answered 404"),
        ("/loop", None, "more than 5 redirects"),
        ("/image.png", (b"\x89PNG\r\n\x1a\n" + b"\0" * 100, "image/png"), "neither a feed nor"),
        ("/huge", (b"<html>" + b"x" * (5 * 1024 * 1024 + 1), "text/html"), "bytes, more than"),
        ("/broken.xml", (b"<?xml version='1.0'?><rss><channel><item>", "text/xml"), None),
    ],
)
def test_a_source_that_cannot_be_read_says_why_and_changes_nothing(
    engine, settings, site, path, document, reason
):
    ingest_source(engine, settings, str(DATA / "ghost-feed.xml"))
    if document is not None:
        site.documents[path] = document
    if reason is None:  # a broken feed: what it holds is read, or it is refused
        try:
            ingest_source(engine, settings, site.url(path))
        except SourceError as exc:
            assert site.url(path) in str(exc)
    else:
        with pytest.raises(SourceError, match=reason) as raised:
            ingest_source(engine, settings, site.url(path))
        assert str(raised.value).startswith(site.url(path))
    with Session(engine) as session:
        assert [a.title for a in session.exec(select(Article))] == ["Where the aid money went"]


def test_a_gzipped_feed_reads_as_the_plain_one_and_a_gzip_bomb_is_refused_early(settings, site):
    feed = (DATA / "ghost-feed.xml").read_bytes()
    site.documents["/feed.gz"] = (gzip.compress(feed), "application/rss+xml")
    site.encodings["/feed.gz"] = "gzip"
    site.documents["/feed"] = (feed, "application/rss+xml")
    gzipped, plain = (read_source(site.url(p), rules(settings)) for p in ("/feed.gz", "/feed"))
    assert [(d.title, d.body_html, d.url) for d in gzipped.drafts] == [
        (d.title, d.body_html, d.url) for d in plain.drafts
    ]
    assert site.requests[0][1]["Accept-Encoding"] == "gzip"
    # 200 MB of spaces in a page, 200 kB on the wire: refused before it is all inflated
    bomb = gzip.compress(b"<html><p>" + b" " * (200 * 1024 * 1024), compresslevel=9)
    site.documents["/bomb"] = (bomb, "text/html")
    site.encodings["/bomb"] = "gzip"
    tracemalloc.start()
    try:
        with pytest.raises(SourceError, match=r"/bomb: more than the 5,242,880 bytes allowed"):
            read_source(site.url("/bomb"), rules(settings))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 1024 * 1024, f"{peak:,} bytes held at the peak"
    for path, body, coding, reason in [
        ("/cut.gz", gzip.compress(feed)[:-100], "gzip", "ends early"),
        ("/junk.gz", b"not gzip at all", "gzip", "compressed content is damaged"),
        ("/feed.br", feed, "br", r"an encoding mailer does not read \(br\)"),
    ]:
        site.documents[path] = (body, "application/rss+xml")
        site.encodings[path] = coding
        with pytest.raises(SourceError, match=reason):
            read_source(site.url(path), rules(settings))


def test_an_unreachable_source_is_one_line_naming_it(settings):
    with pytest.raises(SourceError, match=r"^http://127\.0\.0\.1:9/feed: cannot be fetched"):
        read_source("http://127.0.0.1:9/feed", rules(settings))


def test_a_page_in_a_declared_or_detected_charset_is_read_and_garbage_refused(settings, tmp_path):
    cyrillic = "<html><head><meta charset='windows-1251'></head><body><p>{}</p></body></html>"
    text = "Министр иностранных дел России Сергей Лавров выступил на открытии переговоров."
    page = tmp_path / "ru.html"
    page.write_bytes(cyrillic.format(text).encode("cp1251"))
    assert text in read_source(str(page), rules(settings)).drafts[0].body_html
    undeclared = tmp_path / "undeclared.html"
    undeclared.write_bytes(f"<html><body><p>{text} {text}</p></body></html>".encode("cp1251"))
    assert text in read_source(str(undeclared), rules(settings)).drafts[0].body_html
    garbage = tmp_path / "garbage.html"
    garbage.write_bytes(b"<html><body><p>" + bytes(range(128, 256)) * 3 + b"</p></body></html>")
    with pytest.raises(SourceError):
        read_source(str(garbage), rules(settings))


def test_markdown_front_matter_and_its_errors(settings, tmp_path):
    path = tmp_path / "post.md"
    path.write_text(
        "---\ntitle: From front matter\ndate: 2025-10-01\nsummary: Its own summary.\n---\n"
        "# A heading that becomes h2\n\nA paragraph with *emphasis* and <script>x()</script>.\n"
    )
    draft = read_source(str(path), rules(settings), timezone="Europe/Oslo").drafts[0]
    assert draft.title == "From front matter" and draft.summary == "Its own summary."
    assert (
        draft.published_at is not None
        and draft.published_at.isoformat() == "2025-10-01T00:00:00+02:00"
    )
    assert draft.body_html == (
        "<h2>A heading that becomes h2</h2>\n<p>A paragraph with <em>emphasis</em> and .</p>"
    )
    path.write_text("---\ntitle: [unclosed\n---\nText.\n")
    with pytest.raises(SourceError, match="front matter is not valid YAML"):
        read_source(str(path), rules(settings))
    path.write_text("---\ncolour: red\n---\nText that is long enough to be an article.\n")
    assert read_source(str(path), rules(settings)).drafts[0].notes == (
        "front matter mailer does not use, ignored: colour",
    )


def test_hugo_and_jekyll_front_matter_is_read_under_its_own_names(settings):
    """Aliases for what mailer uses; the site generator's own keys are ignored and named."""
    hugo = read_source(str(DATA / "hugo-post.md"), rules(settings)).drafts[0]
    assert hugo.title == "Kabul's schools open their doors again"
    assert hugo.author == "Mina Rahimi, Omid Karimi and Sara Nazari"
    assert hugo.url == "https://dawatmedia.example/2025/10/02/kabul-schools-open/"
    assert hugo.summary == "Girls over twelve are still kept out, teachers say."
    assert hugo.published_at == datetime(2025, 10, 2, 2, 30, tzinfo=UTC)  # publishDate
    assert hugo.notes == (
        "front matter mailer does not use, ignored: aliases, categories, date, feed_url, "
        "slug, tags, weight",
    )
    jekyll = read_source(str(DATA / "jekyll-post.md"), rules(settings)).drafts[0]
    assert (jekyll.title, jekyll.author) == (
        "Herat's carpet weavers find new buyers",
        "Farid Ahmadi",
    )
    assert jekyll.url == "https://dawatmedia.example/2025/10/05/herat-carpets/"
    assert jekyll.summary == "Online orders from abroad keep the looms busy."
    assert jekyll.published_at == datetime(2025, 10, 5, 5, 45, tzinfo=UTC)
    assert jekyll.notes == (
        "front matter mailer does not use, ignored: categories, comments, layout, permalink, tags",
    )


def test_a_draft_is_refused_and_other_aliases_are_read(settings, tmp_path):
    path = tmp_path / "post.md"
    text = "A paragraph long enough to be the article, with its full stop.\n"
    path.write_text(f"---\ntitle: Not yet\ndraft: true\nlayout: post\n---\n{text}")
    with pytest.raises(SourceError) as refused:
        read_source(str(path), rules(settings))
    assert str(refused.value) == (
        "post.md is a draft (draft: true in its front matter); publish it first or remove the key"
    )
    path.write_text(
        "---\npubDate: 2025-10-01T08:00:00+02:00\nlang: fa\nauthors: [Ana, Bo]\n"
        f"canonical: https://n.example/a/\nurl: /a/\n---\n{text}"
    )
    draft = read_source(str(path), rules(settings)).drafts[0]
    assert (draft.author, draft.url, draft.language) == ("Ana and Bo", "https://n.example/a/", "fa")
    assert draft.published_at == datetime(2025, 10, 1, 6, tzinfo=UTC)
    assert draft.notes == ("front matter mailer does not use, ignored: url",)


def test_a_jekyll_post_not_published_is_refused_like_a_draft(settings, tmp_path):
    path = tmp_path / "post.md"
    text = "A paragraph long enough to be the article, with its full stop.\n"
    for value in ("false", "no", '"false"'):
        path.write_text(f"---\ntitle: Not yet\npublished: {value}\nlayout: post\n---\n{text}")
        with pytest.raises(SourceError) as refused:
            read_source(str(path), rules(settings))
        assert str(refused.value) == (
            "post.md is a draft (published: false in its front matter); publish it first "
            "or remove the key"
        )
    path.write_text(f"---\ntitle: Out\npublished: true\nlayout: post\n---\n{text}")
    draft = read_source(str(path), rules(settings)).drafts[0]
    assert draft.title == "Out" and draft.notes == (
        "front matter mailer does not use, ignored: layout",
    )


def test_hugo_json_front_matter_is_read(settings, tmp_path):
    meta = {
        "title": "Kabul's schools open their doors again",
        "publishDate": "2025-10-02T07:00:00+04:30",
        "description": "Girls over twelve are still kept out, teachers say.",
        "authors": ["Mina Rahimi", "Omid Karimi"],
        "tags": ["education"],
        "params": {"feature": True},
    }
    path = tmp_path / "post.md"
    body = "The schools opened on *Saturday*, with their teachers back at work.\n"
    path.write_text(f"{json.dumps(meta, indent=2)}\n\n{body}")
    draft = read_source(str(path), rules(settings)).drafts[0]
    assert draft.title == meta["title"] and draft.summary == meta["description"]
    assert draft.author == "Mina Rahimi and Omid Karimi"
    assert draft.published_at == datetime(2025, 10, 2, 2, 30, tzinfo=UTC)
    assert draft.body_html == (
        "<p>The schools opened on <em>Saturday</em>, with their teachers back at work.</p>"
    )
    assert draft.notes == ("front matter mailer does not use, ignored: params, tags",)
    path.write_text('{\n  "title": "Unclosed",\n}\n\nText.\n')
    with pytest.raises(SourceError, match="front matter is not valid YAML, TOML or JSON"):
        read_source(str(path), rules(settings))


def test_the_watched_folder_logs_the_front_matter_it_ignored(engine, settings, tmp_path, caplog):
    """The scheduler says what ingest says: the keys it ignored, and a draft refused."""
    caplog.set_level(logging.INFO, logger="mailer.scheduler")
    folder = tmp_path / "incoming"
    folder.mkdir()
    (folder / "jekyll.md").write_bytes((DATA / "jekyll-post.md").read_bytes())
    text = "A paragraph long enough to be the article, with its full stop.\n"
    (folder / "later.md").write_text(f"---\ntitle: Not yet\npublished: false\n---\n{text}")
    for path in folder.iterdir():
        os.utime(path, (path.stat().st_mtime - 10, path.stat().st_mtime - 10))  # settled
    FolderWatch(folder).poll(engine, settings, datetime.now(UTC))
    lines = [record.getMessage() for record in caplog.records]
    assert (
        'article-note article=1 file=jekyll.md note="front matter mailer does not use, '
        'ignored: categories, comments, layout, permalink, tags"'
    ) in lines
    assert any(
        line.startswith("article-refused file=later.md") and "published: false" in line
        for line in lines
    )


def test_mailer_ingest_names_the_front_matter_it_ignored(settings, tmp_path):
    env = _environment(settings.database.url, 1)
    done = commands.mailer(["ingest", str(DATA / "jekyll-post.md")], tmp_path, env)
    assert done.returncode == 0, done.stderr
    assert "Article 1 (new): Herat's carpet weavers find new buyers" in done.stdout
    assert "ignored: categories, comments, layout, permalink, tags" in done.stderr


def _feed(*entries: tuple[str, datetime]) -> bytes:
    items = "".join(
        f"<item><title>{title}</title><link>https://news.example/{n}/</link>"
        f"<guid>https://news.example/?p={n}</guid><pubDate>{format_datetime(when)}</pubDate>"
        f"<description>&lt;p&gt;{title}: the whole story in a sentence or two.&lt;/p&gt;"
        "</description></item>"
        for n, (title, when) in enumerate(entries)
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><rss version="2.0"><channel><title>News</title>'
        f"<link>https://news.example/</link>{items}</channel></rss>"
    ).encode()


def test_the_scheduler_polls_the_feed_and_sends_only_what_is_new(
    engine, settings, smtp, site, caplog
):
    caplog.set_level(logging.INFO, logger="mailer.scheduler")
    for n in range(2):
        add_subscriber(engine, f"r{n}@example.org", confirmed=True)
    now = datetime.now(UTC)
    site.documents["/feed/"] = (_feed(("Already there", now)), "application/rss+xml")
    polling = settings.replace(
        schedule={"feed_url": site.url("/feed/"), "auto_send_new_articles": True}
    )
    service = Service(polling, engine)
    service.poll()  # the first look takes stock
    assert smtp.received == [] and "articles-found" in caplog.text
    service.poll()  # unchanged: a 304, nothing read
    assert site.requests[-1][1].get("If-None-Match") and smtp.received == []
    site.documents["/feed/"] = (
        _feed(
            ("Already there", now),
            ("Fresh news", now),
            ("An old entry that reappeared", now - timedelta(days=30)),
        ),
        "application/rss+xml",
    )
    service.poll()
    assert [m.message["Subject"] for m in smtp.received] == ["Fresh news"] * 2
    assert "article-old" in caplog.text
    del site.documents["/feed/"]
    service.poll()  # the feed is gone: said, and nothing changes
    assert "feed-failed" in caplog.text and "404" in caplog.text
    assert len(smtp.received) == 2


# one backend: the command line is the same on both, and what it stores is tested on both
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_mailer_ingest_a_feed_url_then_preview_the_latest(settings, site, tmp_path):
    site.documents["/feed/"] = ((DATA / "wordpress-feed.xml").read_bytes(), "application/rss+xml")
    env = _environment(settings.database.url, 1)

    def mailer(*args: str) -> subprocess.CompletedProcess[str]:
        return commands.mailer(args, tmp_path, env)

    first = mailer("ingest", site.url("/feed/"))
    assert first.returncode == 0, first.stderr
    assert "3 new, 0 updated, 0 unchanged, 0 skipped." in first.stdout
    assert "Article 1 (new): Lavrov’s Dual-Message" in first.stdout
    again = mailer("ingest", site.url("/feed/"))  # a conditional GET, answered 304
    assert again.stdout.startswith(f"{site.url('/feed/')}: unchanged since last time")
    assert site.requests[-1][1].get("If-None-Match")
    refreshed = mailer("ingest", site.url("/feed/"), "--refresh")
    assert "0 new, 0 updated, 3 unchanged, 0 skipped." in refreshed.stdout
    assert "If-None-Match" not in site.requests[-1][1]
    latest = mailer("preview", "--latest", "--text")  # an undated entry: dated when it came
    assert latest.returncode == 0 and "A note without a date" in latest.stdout
    preview = mailer("preview", "--article", "1", "--text")
    assert preview.returncode == 0 and "Lavrov praised the Taliban’s campaign" in preview.stdout
    assert "appeared first on" not in preview.stdout
    down = mailer("ingest", "http://127.0.0.1:9/feed/")
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert down.stderr.startswith("error: http://127.0.0.1:9/feed/: cannot be fetched")


def _rss(items: str) -> str:
    return f'<rss version="2.0"><channel><title>T</title><link>https://n.example/</link>{items}</channel></rss>'


def test_full_text_reads_only_web_pages_on_the_feeds_own_site(settings, site, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("The newsroom's secret, which must never reach an email.\n")
    items = "".join(
        f"<item><title>{n}</title><link>{link}</link><guid>g{n}</guid>"
        "<description>An excerpt of the story, long enough to stand.</description></item>"
        for n, link in enumerate(
            [str(secret), "file:///etc/hostname", "http://elsewhere.example/a"]
        )
    )
    site.documents["/feed/"] = (_rss(items).encode(), "application/rss+xml")
    over_http = read_source(site.url("/feed/"), rules(settings), full_text=True)
    # a path is an address on the feed's own site (there: 404); the others are not read
    assert over_http.drafts == [] and len(over_http.problems) == 3
    assert "404" in over_http.problems[0] and "was not read" in over_http.problems[2]
    feed = tmp_path / "feed.xml"
    feed.write_text(_rss(items))
    from_a_file = read_source(str(feed), rules(settings), full_text=True)
    assert from_a_file.drafts[2:] == [] and len(from_a_file.problems) >= 2
    assert all("is not a web address" in p for p in from_a_file.problems[:2])
    for read in (over_http, from_a_file):
        assert not any("must never reach" in d.body_html for d in read.drafts)


def test_one_unreadable_entry_is_skipped_and_the_others_kept(settings, tmp_path):
    items = (
        "<item><title>Broken</title><guid>a</guid><description>&lt;p&gt;Bad &amp;#1; byte"
        " in a paragraph long enough.&lt;/p&gt;&lt;img src='https://x/y.jpg'&gt;</description></item>"
        "<item><title>Images only</title><guid>b</guid>"
        "<description>&lt;img src='https://x/y.jpg'&gt;</description></item>"
        "<item><title>Good</title><guid>c</guid><description>A good entry with a sentence."
        "</description></item>"
    )
    feed = tmp_path / "feed.xml"
    feed.write_text(_rss(items))
    read = read_source(str(feed), rules(settings))
    assert [d.title for d in read.drafts] == ["Broken", "Good"]
    assert "Bad  byte" not in read.drafts[0].body_html and "Bad" in read.drafts[0].body_html
    assert len(read.problems) == 1 and read.problems[0].startswith("Images only:")


def test_entries_sharing_a_description_or_a_link_stay_two_articles(engine, settings, tmp_path):
    items = "".join(
        f"<item><title>Episode {n}</title><link>https://n.example/live/</link><guid>ep{n}</guid>"
        "<description>Our weekly podcast, with the news of the week.</description></item>"
        for n in (1, 2)
    )
    feed = tmp_path / "feed.xml"
    feed.write_text(_rss(items))
    first = ingest_source(engine, settings, str(feed))
    again = ingest_source(engine, settings, str(feed))
    assert [r.outcome for r in first.results] == ["new", "new"]
    assert [r.outcome for r in again.results] == ["unchanged", "unchanged"]


def test_pixels_lazy_images_and_article_words_that_look_like_boxes(settings, tmp_path):
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><title>Markets &amp; money</title>"
        '<link rel="canonical" href="/2025/markets/">'
        '<script type="application/ld+json">{"@type":"NewsArticle",'
        '"headline":"Tom &amp; Jerry&#039;s market"}</script></head><body><article>'
        "<p>The ruling is final. <a href='/r'>Read more about the ruling</a> in our report.</p>"
        '<p class="share-price">Shares fell three percent on the news this morning.</p>'
        '<p>A chart: <img src="data:image/gif;base64,AAAA" data-src="/chart.png" width="800"'
        ' height="400"><img src="https://t.example/p.gif" style="width:1px;height:1px"></p>'
        "</article></body></html>"
    )
    draft = read_source(str(page), rules(settings), url="https://n.example/x").drafts[0]
    assert draft.title == "Tom & Jerry's market"
    assert draft.url == "https://n.example/2025/markets/"
    assert "Read more about the ruling</a> in our report." in draft.body_html
    assert "Shares fell three percent" in draft.body_html
    assert 'src="https://n.example/chart.png"' in draft.body_html
    assert "p.gif" not in draft.body_html


def test_a_feed_without_an_xml_declaration_is_still_a_feed(settings, site):
    entry = "<title>Bare</title><guid>z</guid><description>A bare feed's entry.</description>"
    body = _rss(f"<item>{entry}</item>")
    site.documents["/bare"] = (b"\xef\xbb\xbf" + body.encode(), "text/xml")
    assert [d.title for d in read_source(site.url("/bare"), rules(settings)).drafts] == ["Bare"]


PERSIAN = (
    "روسيه روز سه‌شنبه ميزبان هيئتي بلندپايه از طالبان بود و سرگئي لاوروف، وزير خارجه اين "
    "کشور، نسبت به هرگونه حضور نظامي خارجي در افغانستان هشدار داد."
)


def test_a_file_in_another_scripts_code_page_is_detected_not_read_as_latin(settings, tmp_path):
    """Windows-1252 would read these bytes too, as gibberish: charset-normalizer tells."""
    for name, data in (
        ("fa.txt", f"{PERSIAN}\n".encode("cp1256")),
        ("fa.md", f"# گفت‌وگوهاي مسکو\n\n{PERSIAN}\n".encode("cp1256")),
        ("fa.html", f"<html><body><p>{PERSIAN}</p></body></html>".encode("cp1256")),
    ):
        path = tmp_path / name
        path.write_bytes(data)
        draft = read_source(str(path), rules(settings)).drafts[0]
        assert PERSIAN in draft.body_html, name
        assert draft.language == "fa"


def test_a_second_ingest_of_a_url_asks_only_for_what_changed_by_date_too(settings, site, tmp_path):
    """A server that gives Last-Modified and no ETag: asked If-Modified-Since, answers 304."""
    site.documents["/feed/"] = ((DATA / "ghost-feed.xml").read_bytes(), "application/rss+xml")
    site.dated.add("/feed/")
    env = _environment(settings.database.url, 1)
    command = ["ingest", site.url("/feed/")]
    runs = [commands.mailer(command, tmp_path, env) for _ in range(2)]
    assert [run.returncode for run in runs] == [0, 0], runs[1].stderr
    asked = [headers.get("If-Modified-Since") for _path, headers in site.requests]
    assert asked == [None, "Thu, 01 Jan 2026 00:00:00 GMT"]
    assert "unchanged since last time" in runs[1].stdout and "Article" not in runs[1].stdout


def test_ingest_full_text_after_a_plain_ingest_reads_the_pages(settings, site, tmp_path):
    """The remembered ETag is for a read without --full-text: with it, the feed is read
    whole and each entry's page fetched, not answered "unchanged"."""
    site.documents["/page/"] = ((DATA / "wordpress-article.html").read_bytes(), "text/html")
    items = (
        f"<item><title>One</title><link>{site.url('/page/')}</link><guid>g1</guid>"
        "<description>An excerpt of the story, long enough to stand.</description></item>"
    )
    site.documents["/feed/"] = (_rss(items).encode(), "application/rss+xml")
    env = _environment(settings.database.url, 1)
    command = ["ingest", site.url("/feed/")]
    runs = [commands.mailer(command + more, tmp_path, env) for more in ([], ["--full-text"], [])]
    assert [run.returncode for run in runs] == [0, 0, 0], runs[1].stderr
    assert "Article 1 (new)" in runs[0].stdout
    assert "Article 1 (updated)" in runs[1].stdout
    assert "unchanged since last time" in runs[2].stdout
    asked = [(path, headers.get("If-None-Match")) for path, headers in site.requests]
    assert [path for path, _etag in asked] == ["/feed/", "/feed/", "/page/", "/feed/"]
    assert asked[1][1] is None and asked[3][1]  # only the plain ingest asks conditionally


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "93.184.215.14", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"],
)
def test_a_public_address(address):
    assert is_public(address)


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
        "100.64.0.1", "0.0.0.0", "0.1.2.3", "224.0.0.251", "255.255.255.255", "::1", "::",
        "fc00::1", "fd12:3456::1", "fe80::1", "fe80::1%eth0", "ff02::1", "fec0::1",
        "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:10.0.0.1", "64:ff9b::a9fe:a9fe",
        "2002:a9fe:a9fe::1", "not an address",
    ],
)  # fmt: skip
def test_a_non_public_address(address):
    assert not is_public(address)


def test_who_may_lead_where():
    """The editor's host goes whatever it is; after a public one, only public addresses."""
    assert not Reach.of("http://93.184.215.14/feed/").private_ok
    assert Reach.of("http://93.184.215.14/feed/", allow_private=True).private_ok
    assert Reach.of("http://127.0.0.1:8000/feed/").private_ok  # a local test server
    assert Reach.of("http://[::1]:8000/feed/").private_ok
    assert not Reach.of(None).private_ok  # a file's links are a public site's
    public = Reach.of("http://93.184.215.14/feed/")
    assert public.addresses("93.184.215.14") == ["93.184.215.14"]
    for host, address in [("169.254.169.254", "169.254.169.254"), ("[::1]", "::1")]:
        with pytest.raises(NonPublicAddress, match=re.escape(address)):
            public.addresses(host)
    local = Reach.of("http://127.0.0.1/")
    assert local.addresses("169.254.169.254") == ["169.254.169.254"]


# A public address (example.com's) that the tests' network routes to the test server.
ROUTED = "93.184.215.14"


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The network, mocked as DNS is: a connection to ROUTED reaches 127.0.0.1, where
    the test servers listen, as if the site were on the public internet."""
    connect = httpcore.SyncBackend.connect_tcp

    def route(self: httpcore.SyncBackend, host: str, *args: Any, **kwargs: Any) -> Any:
        return connect(self, "127.0.0.1" if host == ROUTED else host, *args, **kwargs)

    monkeypatch.setattr(httpcore.SyncBackend, "connect_tcp", route)


def _public(site: Site, **names: list[str]) -> Reach:
    """A fetch that starts on news.example, a public site as far as mailer knows: its
    name resolves to ROUTED (only DNS and routing are mocked: use the `routed`
    fixture); `names` resolve as given."""
    table = {"news.example": [ROUTED], **{k.replace("_", "."): v for k, v in names.items()}}
    return Reach.of(
        "http://news.example/", resolve=lambda host: table.get(host) or system_resolver(host)
    )


def test_a_redirect_from_a_public_site_to_a_private_address_is_refused(settings, site, routed):
    site.documents["/feed/"] = ((DATA / "ghost-feed.xml").read_bytes(), "application/rss+xml")
    news = f"http://news.example:{site.port}"
    site.redirects.update(
        {
            "/moved/": f"{news}/feed/",
            "/to-local/": site.url("/feed/"),
            "/to-metadata/": "http://169.254.169.254/latest/meta-data/",
            "/to-mapped/": f"http://[::ffff:127.0.0.1]:{site.port}/feed/",
            "/to-intranet/": f"http://intranet.example:{site.port}/feed/",
            "/to-rebound/": f"http://rebound.example:{site.port}/feed/",
            "/to-decimal/": f"http://2130706433:{site.port}/feed/",
            "/to-localhost/": f"http://localhost:{site.port}/feed/",
        }
    )
    reach = _public(site, intranet_example=["10.0.0.5"], rebound_example=["8.8.8.8", "127.0.0.1"])
    assert len(read_source(f"{news}/moved/", rules(settings), reach=reach).drafts) == 1
    for path, address in [
        ("/to-local/", "127.0.0.1"),
        ("/to-metadata/", "169.254.169.254, the cloud metadata address"),
        ("/to-mapped/", "::ffff:127.0.0.1"),
        ("/to-intranet/", "intranet.example (10.0.0.5), a private address"),
        ("/to-rebound/", "rebound.example (127.0.0.1), a loopback address"),
        ("/to-decimal/", "2130706433 (127.0.0.1), a loopback address"),
        ("/to-localhost/", "localhost ("),
    ]:
        with pytest.raises(SourceError) as refused:
            read_source(f"{news}{path}", rules(settings), reach=reach)
        message = str(refused.value)
        assert message.startswith(f"{news}{path}: refused to connect to ") and "\n" not in message
        assert address in message and "allow_private_addresses" in message
    assert [path for path, _headers in site.requests].count("/feed/") == 1  # /moved/'s
    # a local test feed may redirect locally; so may anything with allow_private_addresses
    assert len(read_source(site.url("/to-local/"), rules(settings)).drafts) == 1
    lifted = Reach("news.example", True, reach.resolve)
    assert len(read_source(f"{news}/to-local/", rules(settings), reach=lifted).drafts) == 1


def test_full_text_does_not_follow_an_entry_from_a_public_feed_to_a_private_address(
    engine, settings, site, tmp_path, routed
):
    site.documents["/page/"] = ((DATA / "wordpress-article.html").read_bytes(), "text/html")
    news = f"http://news.example:{site.port}"
    site.redirects["/story/"] = site.url("/page/")
    items = "".join(
        f"<item><title>{n}</title><link>{link}</link><guid>g{n}</guid>"
        "<description>An excerpt of the story, long enough to stand.</description></item>"
        for n, link in enumerate([site.url("/page/"), f"{news}/story/"])
    )
    site.documents["/feed/"] = (_rss(items).encode(), "application/rss+xml")
    read = read_source(f"{news}/feed/", rules(settings), full_text=True, reach=_public(site))
    assert read.drafts == [] and len(read.problems) == 2
    assert "127.0.0.1, a loopback address" in read.problems[1]
    assert "/page/" not in [path for path, _headers in site.requests]
    # a feed file's links are a public site's too, unless the newsroom allows its network
    feed = tmp_path / "feed.xml"
    feed.write_text(_rss(items.split("</item>")[0] + "</item>"))  # the 127.0.0.1 entry
    refused = ingest_source(engine, settings, str(feed), full_text=True)
    assert refused.results == [] and "/page/" not in [path for path, _ in site.requests]
    assert "refused to connect to 127.0.0.1, a loopback address" in refused.problems[0]
    intranet = settings.replace(sources={"allow_private_addresses": True})
    allowed = ingest_source(engine, intranet, str(feed), full_text=True)
    assert [r.outcome for r in allowed.results] == ["new"]


def _rebinding(*answers: list[str]) -> Reach:
    """The reach of a fetch of news.example, whose name answers each look-up with the
    next of `answers` (the last one repeated): DNS rebinding by a hostile public site."""
    left = list(answers)
    return Reach.of(
        "http://news.example/", resolve=lambda host: left.pop(0) if len(left) > 1 else left[0]
    )


@pytest.mark.parametrize(
    ("rebound", "said"),
    [
        ("127.0.0.1", "news.example (127.0.0.1), a loopback address"),
        ("169.254.169.254", "news.example (169.254.169.254), the cloud metadata address"),
    ],
)
def test_the_feeds_own_host_rebound_to_a_private_address_is_refused(
    settings, site, routed, rebound, said
):
    """A public host is checked on every connection to it: a redirect to itself or an
    entry page on its own site, looked up again, may not reach a private address."""
    news = f"http://news.example:{site.port}"
    site.documents["/page/"] = ((DATA / "wordpress-article.html").read_bytes(), "text/html")
    items = (
        f"<item><title>One</title><link>{news}/page/</link><guid>g1</guid>"
        "<description>An excerpt of the story, long enough to stand.</description></item>"
    )
    site.documents["/feed/"] = (_rss(items).encode(), "application/rss+xml")
    site.redirects["/moved/"] = f"{news}/feed/"
    # the look-ups: as the fetch starts, for the first connection, then for the next one
    with pytest.raises(SourceError) as refused:
        read_source(
            f"{news}/moved/", rules(settings), reach=_rebinding([ROUTED], [ROUTED], [rebound])
        )
    message = str(refused.value)
    assert message.startswith(f"{news}/moved/: refused to connect to {said}: ")
    assert "\n" not in message and "allow_private_addresses" in message
    reach = _rebinding([ROUTED], [ROUTED], [rebound])
    read = read_source(f"{news}/feed/", rules(settings), full_text=True, reach=reach)
    assert read.drafts == [] and len(read.problems) == 1 and said in read.problems[0]
    assert [path for path, _headers in site.requests] == ["/moved/", "/feed/"]
    # the same fetch with the name staying public reads the entry's page
    steady = read_source(
        f"{news}/feed/", rules(settings), full_text=True, reach=_rebinding([ROUTED])
    )
    assert "Regional Engagement and Unresolved Tensions" in steady.drafts[0].body_html


def test_a_local_host_that_turns_public_under_a_fetch_is_refused(settings, site, routed):
    """Local as the fetch begins (so nothing is checked), a hostile site's a moment later:
    refused; a local name with a public address too connects only to the local one."""
    news = f"http://news.example:{site.port}"
    site.documents["/feed/"] = ((DATA / "ghost-feed.xml").read_bytes(), "application/rss+xml")
    with pytest.raises(SourceError) as refused:
        read_source(f"{news}/feed/", rules(settings), reach=_rebinding(["127.0.0.1"], [ROUTED]))
    assert str(refused.value).startswith(
        f"{news}/feed/: refused to connect to news.example: it was on a non-public address "
    )
    assert site.requests == []
    mixed = _rebinding(["127.0.0.1"], [ROUTED, "127.0.0.1"])
    assert mixed.addresses("news.example") == ["127.0.0.1"]
    shifting = iter([["127.0.0.1"], [ROUTED]])
    intranet = Reach.of("http://news.example/", True, lambda host: next(shifting))
    assert intranet.addresses("news.example") == [ROUTED]  # allowed anywhere anyway
    assert len(read_source(f"{news}/feed/", rules(settings), reach=mixed).drafts) == 1


def test_https_verifies_the_sites_name_though_it_connects_to_the_checked_address(tmp_path):
    """The connection goes to the address that was checked; TLS still checks the name."""
    cert, key = self_signed(tmp_path, "news", ("news.example",))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    serving = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    serving.load_cert_chain(cert, key)
    server.socket = serving.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    trusting = ssl.create_default_context(cafile=cert)
    names = {"news.example": ["127.0.0.1"], "alias.example": ["127.0.0.1"]}
    reach = Reach("news.example", True, lambda host: names[host])
    port = server.server_address[1]
    try:
        with httpx.Client(transport=GuardedTransport(reach, trusting)) as client:
            assert client.get(f"https://news.example:{port}/").text == "ok"
            with pytest.raises(httpx.ConnectError, match="certificate"):
                client.get(f"https://alias.example:{port}/")  # the same server, not its name
    finally:
        server.shutdown()
        server.server_close()
