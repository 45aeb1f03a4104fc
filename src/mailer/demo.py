"""`mailer demo`: the whole pipeline on the embedded default. Sample subscribers and the
newsroom's sample article go into the configured database; the issue goes out through a
catcher this command starts on 127.0.0.1, which stores it in var/maildir/. Running it
again sends nothing twice. The appeal shows whole: where the config has no Vipps link or
donate page, links on example hosts stand in."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy import Engine, func, select

from mailer.articles import boilerplate, ingest_file
from mailer.catcher import free_port, start_catcher
from mailer.db import open_database
from mailer.errors import MailerError, SubscriberError
from mailer.issues import article_issue
from mailer.messages import preview
from mailer.models import ARTICLES, SUBSCRIBERS
from mailer.render import render_article_issue
from mailer.runs import send_article
from mailer.settings import Settings, masked_url
from mailer.sources import read_article
from mailer.subscribers import add_subscriber

SAMPLE_ARTICLE = Path(str(resources.files("mailer.samples") / "moscow-format-article.txt"))
SAMPLE_SUBSCRIBERS = (
    ("amina.rahimi@example.org", "Amina Rahimi"),
    ("lars.hansen@example.org", "Lars Hansen"),
    ("farid.noori@example.com", "Farid Noori"),
    ("ingrid.berg@example.net", "Ingrid Berg"),
    ("sara.karimi@example.com", None),
)
MAILDIR = Path("var/maildir")
PREVIEW = Path("var/preview.html")
# The demo's stand-ins for [donation] vipps_link and url, so that it shows the whole appeal
# (both buttons, both QR codes): example hosts, which open nobody's Vipps account or page.
EXAMPLE_LINKS = {
    "vipps_link": "https://vipps.example/donations/557320",
    "url": "https://dawatmedia.example/donate",
}


def run_demo(settings: Settings, say: Callable[[str], None]) -> None:
    engine = open_database(settings.database.url)
    _refuse_real_data(engine, settings)
    say(f"Database: {masked_url(settings.database.url)}")
    settings, stand_ins = with_example_links(settings)
    if stand_ins:
        hosts = ", ".join(sorted({urlsplit(EXAMPLE_LINKS[key]).netloc for key in stand_ins}))
        say(
            f"Appeal: links on example hosts ({hosts}) stand in for [donation] "
            f"{' and '.join(stand_ins)}, which the config leaves empty; they open no one's "
            "account."
        )
    added = 0
    for email, name in SAMPLE_SUBSCRIBERS:
        try:
            add_subscriber(engine, email, name, confirmed=True)
            added += 1
        except SubscriberError:
            pass  # already there from an earlier run
    say(f"Subscribers: {added} sample subscribers added ({len(SAMPLE_SUBSCRIBERS)} in the demo).")

    result = ingest_file(engine, settings, SAMPLE_ARTICLE)
    article = result.article
    say(f"Article {article.id} ({result.outcome}): {article.title}")

    rendered = render_article_issue(settings, article)
    PREVIEW.parent.mkdir(parents=True, exist_ok=True)
    PREVIEW.write_text(preview(settings, rendered), encoding="utf-8")

    port = free_port()
    catcher = start_catcher(MAILDIR, port=port)
    try:
        local = settings.replace(
            smtp={"host": "127.0.0.1", "port": port, "security": "none", "username": ""}
        )
        issue = article_issue(engine, local, article)
        report = send_article(engine, local, issue).report
    finally:
        catcher.stop()
    say(
        f"Issue {issue.id}: sent {report.sent} now through the local catcher on 127.0.0.1:{port}"
        + ("" if report.sent else " (every subscriber had it already)")
        + "."
    )
    say(f"Maildir: {MAILDIR.resolve()}/new ({_count(MAILDIR)} messages in all)")
    say(f"HTML preview: {PREVIEW.resolve()}")
    say(f"Delivery report: mailer status {issue.id}")


def with_example_links(settings: Settings) -> tuple[Settings, list[str]]:
    """The settings with an example link for each donation link the config leaves empty,
    and the keys filled. The CLI warned about the config's own vipps_link already; the
    stand-in is the demo's, on a host that is not Vipps' on purpose, and warns of nothing."""
    empty = {
        key: link for key, link in EXAMPLE_LINKS.items() if not getattr(settings.donation, key)
    }
    return (settings.replace(donation=empty) if empty else settings), list(empty)


def _refuse_real_data(engine: Engine, settings: Settings) -> None:
    """The demo adds fake readers and records sends that only reached the catcher: never
    in a database that holds a newsroom's own subscribers or articles."""
    sample_guid = read_article(SAMPLE_ARTICLE, boilerplate(settings)).guid
    demo_addresses = [email for email, _ in SAMPLE_SUBSCRIBERS]
    with engine.connect() as connection:
        readers = connection.execute(
            select(func.count()).where(SUBSCRIBERS.c.email.not_in(demo_addresses))
        ).scalar_one()
        articles = connection.execute(
            select(func.count()).where(ARTICLES.c.guid != sample_guid)
        ).scalar_one()
    if readers or articles:
        raise MailerError(
            f"{masked_url(settings.database.url)} holds {readers} subscribers and {articles} "
            "articles of its own, and the demo would mix fake readers and sends into them. "
            "Run it in an empty folder, or with MAILER_DATABASE_URL=sqlite:///demo.db"
        )


def _count(maildir: Path) -> int:
    return sum(1 for _ in (maildir / "new").iterdir()) if (maildir / "new").is_dir() else 0
