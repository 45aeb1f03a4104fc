"""`mailer subscribers`: add, list, remove, reactivate, import and export readers, and
count one as a donor."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

import typer

from mailer.cli.app import settings_of
from mailer.cli.output import import_progress, local, plural, print_reader, say


def subscribers_add(
    ctx: typer.Context,
    email: str,
    name: str | None = typer.Option(None, help="The subscriber's name."),
    confirmed: bool = typer.Option(False, help="They have already agreed: add as active."),
    weekly: bool = typer.Option(False, help="Weekly digest instead of every article."),
    language: str | None = typer.Option(
        None,
        help="The languages they read, their own first (fa-AF,en); "
        "default: the publication's language.",
    ),
) -> None:
    """Add a subscriber (pending until confirmed, unless --confirmed)."""
    from mailer import subscribers as subs
    from mailer.db import open_database
    from mailer.models import SubscriberStatus
    from mailer.reader_languages import checked_languages

    settings = settings_of(ctx)
    languages = checked_languages(language, settings.publication.languages)
    engine = open_database(settings.database.url)
    subscriber = subs.add_subscriber(
        engine,
        email,
        name,
        confirmed=confirmed,
        frequency="weekly" if weekly else "every",
        purge_key=settings.purge_key,
        languages=languages,
    )
    say(f"Added {subscriber.email} ({subscriber.status}).")
    if subscriber.status == SubscriberStatus.PENDING:
        say("They receive no mail until confirmed; use --confirmed if they already agreed.")


def subscribers_list(
    ctx: typer.Context, status: str | None = typer.Option(None, help="Only this status.")
) -> None:
    """List subscribers in the order they joined (with the languages they read, when the
    publication has several)."""
    from mailer import subscribers as subs
    from mailer.db import open_database

    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    several = len(settings.publication.languages) > 1
    count = 0
    for s in subs.list_subscribers(engine, status):
        joined = s.created_at.date().isoformat() if s.created_at else ""
        read = f"{s.languages or settings.publication.language:<11} " if several else ""
        say(f"{s.id:>6}  {s.status:<12} {s.frequency:<6} {read}{joined}  {s.email}  {s.name or ''}")
        count += 1
    say(f"{count} subscriber{'s' if count != 1 else ''}")


def subscribers_remove(
    ctx: typer.Context,
    email: str,
    purge: bool = typer.Option(False, help="Also erase their address and name."),
) -> None:
    """Unsubscribe an address; --purge erases their personal data."""
    from mailer import subscribers as subs
    from mailer.db import open_database

    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    subs.remove_subscriber(engine, email, purge=purge, purge_key=settings.purge_key)
    address = subs.normalise_address(email)
    say(f"Erased {address}." if purge else f"Unsubscribed {address}.")


def subscribers_show(ctx: typer.Context, email: str) -> None:
    """One reader: status, frequency, dates, donor status, bounce score, and the bounces
    and complaints that came back about them."""
    from mailer.bounce_processing import reader_facts
    from mailer.db import open_database

    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    print_reader(reader_facts(engine, email), settings)


def subscribers_reactivate(ctx: typer.Context, email: str) -> None:
    """Make a bounced address active again (its mailbox works again, or it was bounced
    wrongly); its past failures no longer count and its bounce score starts again."""
    from mailer import subscribers as subs
    from mailer.db import open_database

    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    subscriber = subs.reactivate(engine, email)
    say(f"Reactivated {subscriber.email}: it gets the next issue.")


def subscribers_import(ctx: typer.Context, file: Path) -> None:
    """Import a CSV file with a header row: email[,name][,status][,frequency][,language]."""
    from mailer import subscriber_csv
    from mailer.db import open_database

    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    with import_progress() as progress:
        report = subscriber_csv.import_csv(
            engine,
            file,
            purge_key=settings.purge_key,
            progress=progress,
            languages=settings.publication.languages,
        )
    for line, reason in report.rejected:
        typer.echo(f"line {line}: rejected: {reason}", err=True)
    for line, reason in report.skipped[:SKIPPED_SHOWN]:
        typer.echo(f"line {line}: skipped: {reason}", err=True)
    if len(report.skipped) > SKIPPED_SHOWN:  # a file imported again: its rows are all there
        more = len(report.skipped) - SKIPPED_SHOWN
        typer.echo(f"... and {plural(more, 'more row')} skipped the same way", err=True)
    if report.ignored_columns:
        say(f"Ignored columns: {', '.join(report.ignored_columns)}")
    say(
        f"Imported {report.added}; skipped {len(report.skipped)} already on the list; "
        f"rejected {len(report.rejected)}."
    )


SKIPPED_SHOWN = 50


def subscribers_export(
    ctx: typer.Context, file: Path | None = typer.Argument(None, help="Default: standard output.")
) -> None:
    """Export subscribers as CSV (importable again)."""
    from mailer import subscriber_csv
    from mailer.db import open_database

    engine = open_database(settings_of(ctx).database.url)
    if file is None:
        subscriber_csv.export_csv(engine, sys.stdout)
        return
    with file.open("w", encoding="utf-8", newline="") as out:
        count = subscriber_csv.export_csv(engine, out)
    say(f"Exported {count} subscribers to {file}.")


def subscribers_donor(
    ctx: typer.Context,
    email: str,
    until: str | None = typer.Option(
        None, help="Thank them through this day (YYYY-MM-DD); default: thank_donors_days."
    ),
    off: bool = typer.Option(False, "--off", help="They are not a donor (any more)."),
) -> None:
    """Count a reader as a donor: the issues queued for them meanwhile thank them instead
    of asking them to give. --off takes it back."""
    from mailer import supporting
    from mailer.db import open_database

    settings = settings_of(ctx)
    try:
        day = date.fromisoformat(until) if until else None
    except ValueError:
        hint = f"{until!r} is not a date like 2027-03-01"
        raise typer.BadParameter(hint, param_hint="--until") from None
    engine = open_database(settings.database.url)
    status = supporting.admin_sets_donor(engine, settings, email, day, off)
    if status.until is None:
        say(f"{status.email} is not a donor: they get the appeal.")
    else:
        until_then = local(status.until, settings)
        say(f"{status.email} is a donor until {until_then}: they get the thanks.")
