"""`mailer demo`: the whole pipeline on the embedded default. Sample subscribers and the
newsroom's sample article go into the configured database; the issue goes out through a
catcher this command starts on 127.0.0.1, which stores it in var/maildir/. Running it
again sends nothing twice."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path

from mailer.articles import ingest_file
from mailer.catcher import free_port, start_catcher
from mailer.db import open_database
from mailer.delivery import deliver
from mailer.errors import SubscriberError
from mailer.issues import article_issue
from mailer.messages import preview
from mailer.render import render_article_issue
from mailer.settings import Settings
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


def run_demo(settings: Settings, say: Callable[[str], None]) -> None:
    engine = open_database(settings.database.url)
    say(f"Database: {settings.database.url}")
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
        report = deliver(engine, local, issue)
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


def _count(maildir: Path) -> int:
    return sum(1 for _ in (maildir / "new").iterdir()) if (maildir / "new").is_dir() else 0
