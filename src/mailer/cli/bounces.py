"""`mailer bounces`: bounce emails and complaints that came back after the relay took a
message, applied to the readers (mailer.bounce_processing). `process` reads them from
files, folders of them, Maildirs and mboxes; `fetch` from the [bounces] IMAP mailbox
(mailer.bounce_fetching)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mailer.cli.app import settings_of
from mailer.cli.output import plural, say

if TYPE_CHECKING:
    from mailer.bounce_processing import BounceReport


def bounces_process(
    ctx: typer.Context,
    paths: list[Path] = typer.Argument(
        ..., help="Message files (.eml), folders of them, Maildirs or mbox files."
    ),
) -> None:
    """Read bounce emails and complaints and apply them: a hard bounce bounces the
    reader, a soft one adds to their bounce score, a complaint unsubscribes them."""
    from mailer.bounce_processing import check_paths, process
    from mailer.bounces.mailboxes import read_messages
    from mailer.db import open_database
    from mailer.models import utcnow

    settings = settings_of(ctx)
    check_paths(paths)  # every path readable before any message is applied
    engine = open_database(settings.database.url)
    report = process(engine, settings, read_messages(paths), "", utcnow())
    print_bounce_report(report)


def bounces_fetch(ctx: typer.Context) -> None:
    """Read the [bounces] IMAP mailbox and apply what came back, as `bounces process`
    does; each message read is moved to [bounces] imap_processed_folder."""
    from mailer.bounce_fetching import fetch_bounces, mailbox_configured
    from mailer.db import open_database

    settings = settings_of(ctx)
    mailbox_configured(settings)  # before the database is opened
    engine = open_database(settings.database.url)
    fetched = fetch_bounces(engine, settings)
    print_bounce_report(fetched.report)
    if fetched.moved:
        say(
            f"{plural(fetched.moved, 'message')} moved from {fetched.folder} "
            f"to {fetched.processed_folder}."
        )


def print_bounce_report(report: BounceReport) -> None:
    """A line per message and recipient (where it came from, the address, what it is,
    why and what was done), then what the run did."""
    from mailer.bounce_processing import LineKind

    for line in report.lines:
        say(f"{line.source}  {line.recipient or '-'}  {line.kind}  {line.reason}")
    counts = report.counts
    kinds = ", ".join(f"{counts[kind]} {kind}" for kind in LineKind if counts[kind])
    say(
        f"{plural(report.messages, 'message')}: {kinds or 'nothing in them'}; "
        f"{plural(report.bounced, 'reader')} bounced, {report.unsubscribed} unsubscribed."
    )
