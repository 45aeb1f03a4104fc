"""Counting what works without tracking anyone: the appeal's links (and with
count_clicks = "all" every link) reach readers as base_url/r/<issue reference>/<link id>;
`mailer serve` redirects them to the real address and counts per issue and link. Followed
here over real HTTP from the message as the SMTP server received it, with the counts read
from the database and from `mailer status`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import lxml.html
import pytest
from sqlalchemy import Engine, select

from deskclient import ANN, PASSWORD, Desk
from mailer import editors
from mailer.articles import ingest_file
from mailer.delivery import deliver
from mailer.issues import article_issue
from mailer.models import ISSUE_LINKS, EditorRole, Issue
from mailer.render import UNSUBSCRIBE_URL
from mailer.settings import Settings
from mailer.subscribers import add_subscriber
from mailer.testing import RecordingHandler, mailer_on, new_issue, served
from mailer.web.site import CLICKS_PER_CLIENT

DONATE = "https://dawatmedia.example/donate"
VIPPS = "https://qr.vipps.no/donations/557320"
BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
SCANNERS = [
    "",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "BingPreview/1.0b",
    "Microsoft Office Existence Discovery",
    "Barracuda Sentinel (EE)",
    "Mimecast URL Protect",
    "Proofpoint URL Defense",
    "Google-Safety",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "python-requests/2.32.3",
]
ARTICLE = """<html><head><title>Budget talks</title></head><body><article>
<h1>Budget talks</h1>
<p>OSLO – The council met today. The <a href="https://example.org/report?year=2026&amp;part=2">
whole report</a> is public; questions to <a href="mailto:desk@dawatmedia.example">the desk</a>.</p>
<p>The vote is next week, after a second reading of the proposal by the committee.</p>
</article></body></html>
"""


def appeal_settings(settings: Settings, count_clicks: str = "appeal") -> Settings:
    return settings.replace(
        donation={"url": DONATE, "vipps_link": VIPPS}, tracking={"count_clicks": count_clicks}
    )


@pytest.fixture
def site(settings: Settings, engine: Engine) -> Iterator[tuple[str, Settings]]:
    """The site served with the appeal's donate page and Vipps link configured."""
    with served(appeal_settings(settings), engine) as running:
        yield running


def sent_issue(
    engine: Engine, settings: Settings, smtp: RecordingHandler, issue: Issue | None = None
) -> tuple[Issue, EmailMessage]:
    """An issue sent to one reader, and the message as the SMTP server received it."""
    add_subscriber(engine, "ana@example.org", "Ana", confirmed=True)
    issue = issue or new_issue(engine, settings, Path())
    assert deliver(engine, settings, issue).sent == 1
    return issue, smtp.wait_for("ana@example.org")[0]


def parts(message: EmailMessage) -> tuple[str, str]:
    html = message.get_body(("html",))
    text = message.get_body(("plain",))
    assert html is not None and text is not None
    return html.get_content(), text.get_content()


def hrefs(html: str) -> list[str]:
    return [str(href) for href in lxml.html.fromstring(html).xpath("//a/@href")]


def clicks(engine: Engine, issue_id: int | None) -> dict[str, int]:
    k = ISSUE_LINKS.c
    query = select(k.link_id, k.clicks).where(k.issue_id == issue_id)
    with engine.connect() as connection:
        return {link_id: count for link_id, count in connection.execute(query)}


def follow(url: str, agent: str = BROWSER, method: str = "GET") -> httpx.Response:
    return httpx.request(method, url, headers={"User-Agent": agent}, timeout=30)


def test_a_counted_appeal_link_leads_to_the_donate_page_and_counts_one(site, engine, smtp):
    """The donate button and the Vipps link in the message received go through
    /r/<reference>/<id>: a 302 to the donate page with ref=<reference> and to the Vipps
    link with reference=<reference>, one click each in the database; no cookie, nothing
    cached, no Referer onwards."""
    url, running = site
    issue, message = sent_issue(engine, running, smtp)
    reference = issue.reference
    assert reference and reference.startswith("DMC-")
    html, text = parts(message)
    donate, vipps = (f"{url}/r/{reference}/{link_id}" for link_id in ("donate", "vipps"))
    assert donate in hrefs(html) and f"Donate: {donate}" in text
    assert f"{DONATE}?ref=" not in html + text, "readers go through the counted link"
    answer = follow(donate)
    assert answer.status_code == 302
    assert answer.headers["location"] == f"{DONATE}?ref={reference}"
    assert "set-cookie" not in answer.headers
    assert answer.headers["cache-control"] == "no-store"
    assert answer.headers["referrer-policy"] == "no-referrer"
    to_vipps = follow(vipps)
    assert to_vipps.status_code == 302
    assert to_vipps.headers["location"] == f"{VIPPS}?reference={reference}"
    assert clicks(engine, issue.id) == {"donate": 1, "vipps": 1}
    follow(donate)
    assert clicks(engine, issue.id) == {"donate": 2, "vipps": 1}


def test_a_head_request_and_link_scanners_are_sent_on_uncounted(site, engine, smtp):
    url, running = site
    issue, _message = sent_issue(engine, running, smtp)
    donate = f"{url}/r/{issue.reference}/donate"
    head = follow(donate, method="HEAD")
    assert head.status_code == 302 and head.headers["location"].startswith(DONATE)
    for agent in SCANNERS:
        answer = follow(donate, agent)
        assert answer.status_code == 302, agent
        assert answer.headers["location"] == f"{DONATE}?ref={issue.reference}"
    assert clicks(engine, issue.id) == {"donate": 0, "vipps": 0}
    follow(donate)  # a reader, after all of them
    assert clicks(engine, issue.id)["donate"] == 1


def test_a_link_the_issue_does_not_hold_is_refused_and_nothing_counted(
    site, engine, smtp, tmp_path
):
    """Another link id, another reference (a mistyped one, another issue's), or an address
    tacked on: 404, never a redirect elsewhere, and no count moves."""
    url, running = site
    issue, _message = sent_issue(engine, running, smtp)
    other = new_issue(engine, running, tmp_path, number=1)  # holds a donate link of its own
    assert other.reference != issue.reference
    wrong = [
        f"{url}/r/{issue.reference}/1",
        f"{url}/r/{issue.reference}/paypal",
        f"{url}/r/DMC-0000/donate",
        f"{url}/r/{issue.reference.lower()}/donate",
        f"{url}/r/{issue.reference}/https:%2F%2Fevil.example",
        f"{url}/r/{issue.reference}/donate/https://evil.example",
    ]
    for link in wrong:
        answer = follow(link)
        assert answer.status_code == 404, link
        assert "location" not in answer.headers
    assert "No such link" in follow(wrong[0]).text
    smuggled = follow(f"{url}/r/{issue.reference}/donate?url=https://evil.example")
    assert smuggled.headers["location"] == f"{DONATE}?ref={issue.reference}"
    assert clicks(engine, issue.id) == {"donate": 1, "vipps": 0}
    assert clicks(engine, other.id) == {"donate": 0, "vipps": 0}


def test_an_issue_not_yet_sent_redirects_without_counting(site, engine, tmp_path):
    """An editor's test copy of a draft leads to the same places; readers' clicks are
    the ones counted, once the issue goes out."""
    url, running = site
    draft = new_issue(engine, running, tmp_path)
    answer = follow(f"{url}/r/{draft.reference}/vipps")
    assert answer.status_code == 302 and answer.headers["location"].startswith(VIPPS)
    assert clicks(engine, draft.id) == {"donate": 0, "vipps": 0}


def test_one_client_counts_only_so_often(site, engine, smtp):
    """A loop from one address stops adding after CLICKS_PER_CLIENT (still redirected)."""
    url, running = site
    issue, _message = sent_issue(engine, running, smtp)
    donate = f"{url}/r/{issue.reference}/donate"
    with httpx.Client(headers={"User-Agent": BROWSER}, timeout=30) as client:
        answers = {client.get(donate).status_code for _ in range(CLICKS_PER_CLIENT + 5)}
    assert answers == {302}
    assert clicks(engine, issue.id)["donate"] == CLICKS_PER_CLIENT


def test_off_sends_readers_straight_to_the_donate_page(settings, engine, smtp):
    running = appeal_settings(settings, "off")
    issue, message = sent_issue(engine, running, smtp)
    html, text = parts(message)
    marked = f"{DONATE}?ref={issue.reference}"
    assert marked in hrefs(html) and f"Donate: {marked}" in text
    assert "/r/" not in html + text
    assert clicks(engine, issue.id) == {}


def test_all_counts_the_articles_links_too_and_never_the_readers_own(
    settings, engine, smtp, tmp_path
):
    """Every http(s) link of the issue is counted, in the HTML and the text part alike,
    and each redirects to its address; the unsubscribe and preferences links (the
    reader's own) and mailto: stay as they are."""
    source = tmp_path / "budget.html"
    source.write_text(ARTICLE, encoding="utf-8")
    with served(appeal_settings(settings, "all"), engine) as (url, running):
        article = ingest_file(
            engine, running, source, url="https://dawatmedia.example/budget"
        ).article
        issue, message = sent_issue(engine, running, smtp, article_issue(engine, running, article))
        html, text = parts(message)
        with engine.connect() as connection:
            k = ISSUE_LINKS.c
            query = select(k.url, k.link_id).where(k.issue_id == issue.id)
            ids = dict(connection.execute(query).all())
        report = "https://example.org/report?year=2026&part=2"
        marked = f"{DONATE}?ref={issue.reference}"
        counted = {target: f"{url}/r/{issue.reference}/{ids[target]}" for target in ids}
        for target in (report, "https://dawatmedia.example/budget", marked):
            assert counted[target] in hrefs(html) and counted[target] in text, target
            assert target not in text
        assert ids[marked] == "donate"
        assert url in ids and f"{url}/issues/article-{article.id}" in ids, "home, read online"
        answer = follow(counted[report])
        assert answer.status_code == 302 and answer.headers["location"] == report
        assert clicks(engine, issue.id)[ids[report]] == 1
    assert "mailto:desk@dawatmedia.example" in hrefs(html)
    own = [href for href in hrefs(html) if "/unsubscribe/" in href or "/preferences/" in href]
    assert len(own) == 2
    assert all(href.startswith((f"{url}/unsubscribe/", f"{url}/preferences/")) for href in own)
    assert re.search(rf"Unsubscribe: {re.escape(url)}/unsubscribe/\S+", text)
    assert message["List-Unsubscribe"].startswith(f"<{url}/unsubscribe/")
    assert UNSUBSCRIBE_URL not in html + text


def test_mailer_status_and_the_desk_show_the_clicks(site, engine, smtp, tmp_path):
    url, running = site
    issue, _message = sent_issue(engine, running, smtp)
    for _ in range(3):
        follow(f"{url}/r/{issue.reference}/donate")
    follow(f"{url}/r/{issue.reference}/vipps")
    shown = mailer_on(running, tmp_path, "status", str(issue.id))
    assert shown.returncode == 0, shown.stderr
    assert f"reference {issue.reference}" in shown.stdout
    assert re.search(rf"donate +3  {re.escape(DONATE)}\?ref={issue.reference}", shown.stdout)
    assert re.search(rf"vipps +1  {re.escape(VIPPS)}\?reference={issue.reference}", shown.stdout)
    editors.add_editor(engine, ANN, PASSWORD, EditorRole.ADMIN)
    client = Desk(url, running).signed_in()
    try:
        page = client.get(f"/desk/issues/{issue.id}")
    finally:
        client.close()
    assert page.status_code == 200
    rows = lxml.html.fromstring(page.text).xpath("//section[@aria-labelledby='clicks']//tr")
    cells = [[cell.text_content() for cell in row.xpath("td")] for row in rows[1:]]
    assert cells == [
        ["donate (appeal)", "3", f"{DONATE}?ref={issue.reference}"],
        ["vipps (appeal)", "1", f"{VIPPS}?reference={issue.reference}"],
    ]
