"""`mailer send`: an article now, at a time, as a test copy or a dry run; what was left
unfinished (--resume, --worker); a held issue once put right (--issue). Each calls a use
case in mailer.runs and prints its report."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import typer

from mailer.cli.app import resume_collector, settings_of
from mailer.cli.articles import article_choice, language_choice
from mailer.cli.output import confirm, iso_time, local, plural, print_report, say, sending
from mailer.errors import MailerError

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from mailer import runs
    from mailer.models import Article
    from mailer.settings import Settings


def send(
    ctx: typer.Context,
    article: int | None = typer.Option(None, help="Article id."),
    latest: bool = typer.Option(False, help="The latest article."),
    test_to: str | None = typer.Option(None, help="Send one test copy to this address only."),
    as_donor: bool = typer.Option(
        False, help="With --test-to: the donors' copy (the thanks in place of the appeal)."
    ),
    language: str | None = typer.Option(
        None,
        help="With --test-to: the edition of readers of this language (one of "
        "[publication] languages).",
    ),
    dry_run: bool = typer.Option(False, help="Render and count; send nothing."),
    resume: bool = typer.Option(
        False,
        help="Finish every issue started and not finished; deferred messages when due; "
        "confirmation emails the site has queued.",
    ),
    worker: bool = typer.Option(
        False,
        help="One of several senders on the same queue: waits while others hold deliveries, "
        "takes over those of a sender that died, and stops when the issue is done.",
    ),
    at: str | None = typer.Option(
        None,
        help="Send at this time instead of now (ISO 8601, e.g. 2026-12-01T07:00; without an "
        "offset, in the publication's time zone), by `mailer scheduler` or `send --resume`.",
    ),
    cancel: int | None = typer.Option(
        None, metavar="ISSUE", help="Cancel a scheduled issue that has not started."
    ),
    issue_id: int | None = typer.Option(
        None,
        "--issue",
        metavar="ISSUE",
        help="Finish this issue: one held because the relay refused it (once that is put "
        "right), or one started and not finished.",
    ),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Send an article to every subscriber who gets every article."""
    from mailer import runs
    from mailer.articles import find_article
    from mailer.db import open_database

    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    if cancel is not None:
        cancelled = runs.cancel_scheduled(engine, cancel)
        say(f"Cancelled issue {cancel}: “{cancelled.subject}”. Nothing of it was sent.")
        return
    if issue_id is not None:
        resume_collector()
        _resume_issue(engine, settings, issue_id, yes)
        return
    if (resume or worker) and article is None and not latest:
        resume_collector()
        _finish_started(engine, settings, worker)
        return
    chosen = find_article(engine, article_choice(article, latest))
    if at is not None:
        _schedule(engine, settings, chosen, iso_time(at, settings.publication.timezone, "--at"))
        return
    if test_to is not None:
        language = language_choice(settings, language)
        copy = runs.send_test_copy(settings, chosen, test_to, donor=as_donor, language=language)
        say(f"Test copy sent to {copy.address} ({copy.reply}). It is not recorded as a delivery.")
        return
    if dry_run:
        dry = runs.dry_run(engine, settings, chosen)
        say(f"Dry run: “{dry.subject}” would go to {plural(dry.recipients, 'subscriber')}.")
        say("Nothing was sent.")
        return
    prepared = runs.article_send(engine, settings, chosen, worker=worker)
    resume_collector()  # rendered: the rest is the send's own
    issue, pending = prepared.issue, prepared.pending
    say(f"Issue {issue.id}: “{issue.subject}”")
    if pending == 0 and not worker:
        runs.send_article(engine, settings, issue)  # settles rows of readers who left
        if prepared.readers == 0:
            say("Nothing to send: no active subscriber gets every article.")
        else:
            say("Nothing to send: every subscriber has had it (see `mailer status`).")
        return
    say(
        f"To send: {plural(pending, 'subscriber')}, from {settings.publication.from_address} "
        f"via {settings.smtp.host}:{settings.smtp.port}."
    )
    confirm(yes)
    again = f"mailer send --article {chosen.id}"
    with sending(again, pending, bar=not worker) as progress:
        run = runs.send_article(engine, settings, issue, progress, worker=worker)
    print_report(run.report, again, run.next_attempt)
    if run.held_elsewhere:
        say(
            f"{plural(run.held_elsewhere, 'delivery', 'deliveries')} held by another send (or "
            f"one that stopped) until {run.held_until:%H:%M:%S} UTC; run again after that if "
            "they are still open."
        )


def _schedule(engine: Engine, settings: Settings, article: Article, when: datetime) -> None:
    from mailer import runs
    from mailer.models import utcnow

    if when <= utcnow():
        raise MailerError(
            f"--at {local(when, settings)} is in the past; leave --at out to send now"
        )
    issue = runs.schedule_article(engine, settings, article, when)
    say(f"Issue {issue.id}: “{issue.subject}” is scheduled for {local(when, settings)}.")
    say(
        "`mailer scheduler` sends it then (or `mailer send --resume` from cron), showing the "
        f"article as it is at that time. Cancel it with: mailer send --cancel {issue.id}"
    )


def _finish_started(engine: Engine, settings: Settings, worker: bool) -> None:
    """--resume / --worker without an article: scheduled issues now due, then every
    issue being sent."""
    from mailer import runs
    from mailer.issues import held_issues, unfinished_issues
    from mailer.models import utcnow
    from mailer.runs import IssueHeld

    again = "mailer send --resume"
    if not worker:
        _send_transactional(engine, settings)
        for issue, report in runs.start_due_issues(engine, settings, utcnow()):
            say(f"Issue {issue.id}: “{issue.subject}” (scheduled) started.")
            print_report(report, again)
    issues = unfinished_issues(engine)
    if not issues:
        say("Nothing to resume: no issue is being sent.")
    for held in held_issues(engine):
        say(
            f"Issue {held.id}: “{held.subject}” is held, not resumed by itself: the relay "
            f"refused it ({held.held_reason}). Once that is put right: "
            f"mailer send --issue {held.id}"
        )
    held_now = 0
    for issue in issues:
        open_rows = runs.open_deliveries(engine, settings, issue)
        rows = plural(open_rows, "delivery", "deliveries")
        say(f"Issue {issue.id}: “{issue.subject}”: {rows} open.")
        try:
            with sending(again, open_rows, bar=not worker) as progress:
                run = runs.resume(engine, settings, issue, progress, worker=worker)
        except IssueHeld as held:  # it waits for an editor; the other issues go on
            typer.echo(f"error: {held}", err=True)
            held_now += 1
            continue
        _print_resumed(run, again)
    if held_now:
        raise typer.Exit(1)


def _print_resumed(run: runs.IssueRun, again: str) -> None:
    from mailer import runs

    if run.outcome == runs.RunOutcome.BUSY:
        rows = plural(run.held_elsewhere, "delivery", "deliveries")
        say(f"Another send is at work on it ({rows} held until {run.held_until:%H:%M:%S} UTC).")
    else:
        print_report(run.report, again, run.next_attempt)


def _send_transactional(engine: Engine, settings: Settings) -> None:
    """Confirmation links the site queued and has not sent yet (for a site run without
    the scheduler, from cron)."""
    from mailer.transactional import send_queued

    counts = send_queued(engine, settings)
    if counts:
        done = ", ".join(f"{count} {status}" for status, count in sorted(counts.items()))
        say(f"Confirmation links: {done}.")


def _resume_issue(engine: Engine, settings: Settings, issue_id: int, yes: bool) -> None:
    """--issue: an editor finishes one issue, a held one included."""
    from mailer import runs
    from mailer.models import IssueStatus

    issue = runs.resumable_issue(engine, issue_id)
    open_rows = runs.open_deliveries(engine, settings, issue)
    say(f"Issue {issue.id}: “{issue.subject}”: {plural(open_rows, 'delivery', 'deliveries')} open.")
    if issue.status == IssueStatus.HELD:
        say(f"It was held: the relay refused it ({issue.held_reason}).")
        say("The readers still queued get it as the article is now (edit it before this).")
        confirm(yes)
    again = f"mailer send --issue {issue_id}"
    with sending(again, open_rows) as progress:
        run = runs.resume_issue(engine, settings, issue, progress)
    print_report(run.report, again, run.next_attempt)
