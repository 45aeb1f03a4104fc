"""`mailer digest`, the week's digest shown or sent, and `mailer status`, what each issue
did."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mailer.cli.app import settings_of
from mailer.cli.articles import LANGUAGE_OPTION, digest_rendering, language_choice, show
from mailer.cli.output import (
    confirm,
    local,
    plural,
    print_report,
    progress_reporter,
    say,
    since_time,
)

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from mailer.digest import DigestPlan
    from mailer.models import Issue
    from mailer.report import IssueReport
    from mailer.settings import Settings


def digest(
    ctx: typer.Context,
    since: str | None = typer.Option(
        None,
        help="Start from this long ago (7d, 36h, 2w) or this date (ISO 8601), instead of "
        "where the previous digest ended (the first one: the last 7 days).",
    ),
    send: bool = typer.Option(False, "--send", help="Send it (else show what it would hold)."),
    out: Path | None = typer.Option(None, help="Also write its HTML to this file."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    language: str | None = LANGUAGE_OPTION,
) -> None:
    """This week's digest: every article since the previous one, to every subscriber who
    gets it. One per ISO week however often it is run, so it can go in cron."""
    from mailer import runs
    from mailer.db import open_database
    from mailer.digest import plan_digest
    from mailer.issues import find_issue
    from mailer.models import IssueStatus, utcnow

    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    language = language_choice(settings, language)
    now = utcnow()
    start = None if since is None else since_time(since, now, settings.publication.timezone)
    plan = plan_digest(engine, settings.publication.timezone, now, start)
    issue = find_issue(engine, plan.key)
    if issue is not None and issue.status in IssueStatus.STARTED:
        _digest_started(engine, settings, issue, plan, send, yes)
        return
    if not plan.articles:
        say(f"No digest for {plan.week}: no article is new since {local(plan.since, settings)}.")
        return
    say(
        f"Digest for {plan.week}: {plural(len(plan.articles), 'article')} since "
        f"{local(plan.since, settings)}, newest first:"
    )
    for article in plan.articles:
        day = local(article.published_at, settings)[:10] if article.published_at else "-"
        say(f"  {article.id:>5}  {day}  {article.title}")
    if out is not None:
        show(settings, digest_rendering(settings, plan, language), out, text=False)
    readers = runs.readers(engine, "digest")
    if not send:
        say(f"It would go to {plural(readers, 'subscriber')}. Send it with: mailer digest --send")
        return
    say(f"To send: {plural(readers, 'subscriber')}, via {settings.smtp.host}:{settings.smtp.port}.")
    confirm(yes)
    _send_digest(engine, settings, now, start, readers)


def _digest_started(
    engine: Engine, settings: Settings, issue: Issue, plan: DigestPlan, send: bool, yes: bool
) -> None:
    """This week's digest exists: sent already, or to be finished."""
    from mailer import runs
    from mailer.models import IssueStatus, utcnow

    if issue.status == IssueStatus.SENT:
        sent = local(issue.sent_at, settings) if issue.sent_at else "already"
        say(f"The digest for {plan.week} went out ({sent}): issue {issue.id}. One a week.")
        return
    open_rows = runs.open_deliveries(engine, settings, issue)
    if issue.status == IssueStatus.HELD:
        say(
            f"The digest for {plan.week} (issue {issue.id}) is held, {open_rows} open: the relay "
            f"refused it ({issue.held_reason}). Once that is put right: "
            f"mailer send --issue {issue.id}"
        )
        return
    say(f"The digest for {plan.week} (issue {issue.id}) is being sent: {open_rows} open.")
    if not send:
        say("Finish it with: mailer digest --send")
        return
    confirm(yes)
    _send_digest(engine, settings, utcnow(), None, open_rows)


def _send_digest(
    engine: Engine, settings: Settings, now: datetime, since: datetime | None, total: int
) -> None:
    from mailer import runs

    try:
        with progress_reporter(total) as progress:
            run = runs.send_digest(
                engine, settings, now, since=since, progress=progress, by_hand=True
            )
    except KeyboardInterrupt:
        typer.echo(
            "Stopped. What was not sent stays queued; finish with: mailer digest --send", err=True
        )
        sys.exit(130)
    if run.report is None or run.issue is None:  # another run got there first
        say(f"Nothing to send: {run.outcome}.")
        return
    say(f"Issue {run.issue.id}: “{run.issue.subject}”")
    print_report(run.report, "mailer digest --send")


def status(
    ctx: typer.Context, issue: int | None = typer.Argument(None, help="One issue in detail.")
) -> None:
    """Deliveries per state for each issue, what is scheduled, and the errors."""
    from mailer.db import open_database
    from mailer.digest import next_digest_at
    from mailer.models import IssueStatus, utcnow
    from mailer.report import issue_report, list_issues

    engine = open_database(settings_of(ctx).database.url)
    settings = settings_of(ctx)
    if issue is None:
        reports = list_issues(engine)
        if not reports:
            say("No issues yet.")
        for r in reports:
            counts = ", ".join(f"{k} {v}" for k, v in r.counts.items() if v) or "nothing queued"
            if r.issue.status == IssueStatus.SCHEDULED and r.issue.scheduled_at is not None:
                counts = f"scheduled for {local(r.issue.scheduled_at, settings)}"
            if r.issue.status == IssueStatus.HELD:
                counts += f"\n      held: the relay refused it: {r.issue.held_reason}"
            say(f"{r.issue.id:>4}  {r.issue.status:<9} {r.issue.subject}\n      {counts}")
            say_editions(r, settings, "      ")
        cron = settings.schedule.digest_cron
        upcoming = next_digest_at(cron, settings.publication.timezone, utcnow())
        if upcoming is not None:
            say(f"Next weekly digest: {local(upcoming, settings)} (`mailer scheduler`, {cron!r})")
        return
    report = issue_report(engine, issue)
    say(f"Issue {issue}: “{report.issue.subject}” ({report.issue.status})")
    if report.issue.reference:
        say(f"  reference {report.issue.reference} (what readers mark a gift with)")
    if report.issue.status == IssueStatus.HELD:
        say(
            f"  held: the relay refused the message itself, not a reader: "
            f"{report.issue.held_reason}\n  What is queued waits, counting against nobody. "
            f"Put right what the reply says (or ask your provider), then: "
            f"mailer send --issue {issue}"
        )
    for state, count in report.counts.items():
        say(f"  {state:<9} {count}")
    say_editions(report, settings, "  ")
    if report.rate is not None:
        say(f"  rate      {report.rate:.1f} messages/s")
    for p in report.problems:
        retry = (
            f", next attempt {p.next_attempt_at:%Y-%m-%d %H:%M} UTC" if p.next_attempt_at else ""
        )
        say(f"  {p.status} x{p.count} (e.g. {p.example}){retry}: {p.reply}")
    say_clicks(report)


def say_editions(report: IssueReport, settings: Settings, indent: str) -> None:
    """With editions in several languages, a line for each: its readers queued and sent."""
    if len(report.editions) < 2:
        return
    own = settings.publication.language
    for language, counts in sorted(report.editions.items(), key=lambda e: (e[0] is not None, e)):
        waiting = sum(counts[s] for s in ("queued", "sending", "deferred"))
        others = ", ".join(
            f"{k} {v}" for k, v in counts.items() if v and k in ("failed", "skipped")
        )
        say(f"{indent}{language or own:<9} {counts['sent']} sent, {waiting} to go"
            + (f", {others}" if others else ""))  # fmt: skip


def say_clicks(report: IssueReport) -> None:
    """The clicks on each counted link: per issue and link, never per reader."""
    if not report.links:
        say("  clicks    none counted (no counted links: [tracking] count_clicks)")
        return
    say("  clicks    (followed, as far as link scanners are told apart; never who)")
    for link in report.links:
        say(f"    {link.link_id:<8} {link.clicks:>6}  {link.url}")
