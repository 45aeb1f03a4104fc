"""The terminal side of the command line: plain lines, progress bars for sends and
imports, send reports, the confirmation prompt, and the times and durations options
take."""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import typer

from mailer.errors import MailerError

if TYPE_CHECKING:  # the commands that print these have loaded them
    from mailer.bounce_processing import ReaderFacts
    from mailer.runs import SendReport
    from mailer.settings import Settings
    from mailer.subscriber_csv import ImportReport


def say(message: str = "") -> None:
    typer.echo(message)


def plural(count: int, word: str, words: str | None = None) -> str:
    return f"{count} {word if count == 1 else words or word + 's'}"


def confirm(yes: bool) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise MailerError("not sending without confirmation; add --yes to send from a script")
    typer.confirm("Send now?", abort=True)


def iso_time(value: str, timezone: str, option: str = "--published") -> datetime:
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{value!r} is not an ISO date or time, e.g. 2026-11-27 or 2026-11-27T08:30+01:00",
            param_hint=option,
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(timezone))
    return when.astimezone(UTC)


def local(when: datetime, settings: Settings) -> str:
    zone = ZoneInfo(settings.publication.timezone)
    return when.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def since_time(value: str, now: datetime, timezone: str) -> datetime:
    """--since: an age (7d, 36h, 2w, 90m) or an ISO date or time."""
    match = _DURATION.fullmatch(value.strip().lower())
    if match is None:
        return iso_time(value, timezone, "--since")
    return now - timedelta(**{_UNITS[match[2]]: float(match[1])})


@contextmanager
def progress_reporter(
    total: int, every: float = 5.0, bar: bool = True
) -> Iterator[Callable[[str], None]]:
    """A progress bar with counts, rate and time left on a terminal; otherwise (or for a
    worker, whose output goes to a log) a plain line every few seconds."""
    counts: Counter[str] = Counter()
    started = time.monotonic()
    if bar and sys.stderr.isatty():
        from rich.progress import Progress, TextColumn

        columns = [*Progress.get_default_columns(), TextColumn("{task.fields[summary]}")]
        # refreshed by the send itself, not by rich's thread: a process without other
        # threads can fork its helper processes (processes.start_method)
        with Progress(*columns, transient=True, auto_refresh=False) as shown:
            task = shown.add_task("Sending", total=total, summary="")
            refreshed = started

            def advance_bar(status: str) -> None:
                nonlocal refreshed
                counts[status] += 1
                shown.update(task, advance=1, summary=_summary(counts, started))
                if time.monotonic() - refreshed >= 0.1:
                    refreshed = time.monotonic()
                    shown.refresh()

            yield advance_bar
        return
    last = started

    def advance(status: str) -> None:
        nonlocal last
        counts[status] += 1
        if time.monotonic() - last >= every:
            last = time.monotonic()
            done = sum(counts.values())
            typer.echo(f"{done}/{total} handled: {_summary(counts, started)}", err=True)

    yield advance


def _summary(counts: Counter[str], started: float) -> str:
    from mailer.models import DeliveryStatus

    rate = counts[DeliveryStatus.SENT] / max(time.monotonic() - started, 1e-6)
    return (
        f"{counts[DeliveryStatus.SENT]} sent, {counts[DeliveryStatus.FAILED]} failed, "
        f"{counts[DeliveryStatus.DEFERRED]} deferred, {rate:.0f}/s"
    )


@contextmanager
def sending(again: str, total: int, bar: bool = True) -> Iterator[Callable[[str], None]]:
    """The progress of a send; Ctrl-C stops it with what to run to go on, and a relay
    that refuses the issue has what was sent reported before the error."""
    from mailer.runs import IssueHeld

    try:
        with progress_reporter(total, bar=bar) as progress:
            yield progress
    except KeyboardInterrupt:
        typer.echo(f"Stopped. What was not sent stays queued; resume with: {again}", err=True)
        sys.exit(130)
    except IssueHeld as held:
        print_report(held.report, again)
        raise


def print_report(report: SendReport, again: str, next_attempt: datetime | None = None) -> None:
    from mailer.models import DeliveryStatus

    c = report.counts
    say(
        f"Sent {c.get(DeliveryStatus.SENT, 0)}, deferred {c.get(DeliveryStatus.DEFERRED, 0)}, "
        f"failed {c.get(DeliveryStatus.FAILED, 0)}, skipped {c.get(DeliveryStatus.SKIPPED, 0)}."
    )
    if report.bounced:
        say(f"{plural(report.bounced, 'address', 'addresses')} refused as unknown: marked bounced.")
    if next_attempt is not None:
        say(
            f"Deferred messages are due again from {next_attempt:%Y-%m-%d %H:%M} UTC: "
            f"`mailer send --resume` then retries them (`{again}` retries them at once)."
        )


@contextmanager
def import_progress(every: float = 5.0) -> Iterator[Callable[[ImportReport], None]]:
    """The rows going in: a bar on a terminal, otherwise a plain line every few seconds."""
    if sys.stderr.isatty():
        from rich.progress import Progress

        with Progress(*Progress.get_default_columns(), transient=True) as shown:
            task = shown.add_task("Importing", total=None)

            def advance_bar(report: ImportReport) -> None:
                done = report.added + len(report.skipped)
                shown.update(task, total=report.to_add, completed=done)

            yield advance_bar
        return
    last = time.monotonic()

    def advance(report: ImportReport) -> None:
        nonlocal last
        done = report.added + len(report.skipped)
        if done == 0:
            typer.echo(f"Checked the file: {plural(report.to_add, 'row')} to import.", err=True)
        elif time.monotonic() - last >= every or done == report.to_add:
            last = time.monotonic()
            typer.echo(f"{done}/{report.to_add} rows: {report.added} imported", err=True)

    yield advance


def print_reader(facts: ReaderFacts, settings: Settings) -> None:
    """`mailer subscribers show`: the reader's state, consent and donor status, their
    bounce score, and what came back about them by mail, latest first."""
    from mailer.i18n import reader_languages

    reader, limit = facts.subscriber, settings.bounces.soft_limit

    def when(at: datetime | None) -> str:
        return local(at, settings) if at else "-"

    donor = f"until {when(reader.donor_until)} ({reader.donor_by})" if reader.donor_until else "no"
    score = f"{reader.bounce_score} of {limit}"
    if reader.bounce_score_at:
        score += f" (last point {when(reader.bounce_score_at)})"
    for label, value in (
        ("Address", reader.email), ("Name", reader.name or "-"), ("Status", reader.status),
        ("Frequency", reader.frequency),
        ("Languages", ", ".join(reader_languages(reader.languages, settings.publication.language))),
        ("Signed up", when(reader.created_at)),
        ("Confirmed", when(reader.confirmed_at)), ("Unsubscribed", when(reader.unsubscribed_at)),
        ("Donor", donor), ("Bounce score", score),
    ):  # fmt: skip
        say(f"{label + ':':<14}{value}")
    if not facts.history:
        say("No bounces or complaints.")
        return
    say(f"Bounces and complaints, latest first ({len(facts.history)}):")
    for event in facts.history:
        issue = f"issue {event.issue_id}" if event.issue_id else "no issue"
        at = when(event.occurred_at or event.recorded_at)
        say(f"  {at}  {issue:<10} {event.kind:<11} {event.status or '-':<7} {event.reason}")
