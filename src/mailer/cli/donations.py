"""`mailer donations`: import the gifts that arrived (a bank statement, a Vipps report, a
plain CSV) and report what each issue raised."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mailer.cli.app import settings_of
from mailer.cli.output import plural, say
from mailer.gifts.parsed import GiftSource  # light: typer reads it for --format's choices

if TYPE_CHECKING:
    from mailer.fundraising import GiftTally, Sums


def donations_import(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A camt.053 statement, a Vipps report or a CSV."),
    format: GiftSource | None = typer.Option(
        None, "--format", help="What the file is (default: told by its content)."
    ),
) -> None:
    """Import the gifts in a bank statement (ISO 20022 camt.053/054), a Vipps settlement
    report (CSV) or a plain CSV (date,amount,currency,reference,email,name). A gift
    imported before counts once; a file with an error imports nothing."""
    from mailer import fundraising
    from mailer.db import open_database

    settings = settings_of(ctx)
    engine = open_database(settings.database.url)
    done = fundraising.import_gifts(engine, settings, file, format)
    say(f"{file.name} ({done.kind}): {plural(done.new, 'new gift')}, {done.known} already known")
    for count, what in (
        (done.debits, "debits skipped"),
        (done.returns, "returned payments skipped"),
        (done.payouts, "Vipps payouts skipped (the Vipps report holds their gifts)"),
        (done.transfers, "transfers from our own accounts skipped ([donations] own_accounts)"),
        (done.pending, "entries not booked yet skipped"),
    ):
        if count:
            say(f"  {count} {what}")
    say(f"  {done.attributed} attributed to issues, {done.matched} matched to subscribers")
    if done.thanked:
        say(f"  {plural(done.thanked, 'gift')} thanked by mail ([donation] thank_gift_mail)")


def donations_report(ctx: typer.Context) -> None:
    """What each issue raised (gifts, sum per currency, the appeal links' clicks), per
    month, and what is attributed to no issue."""
    from mailer import fundraising
    from mailer.db import open_database

    engine = open_database(settings_of(ctx).database.url)
    shown = fundraising.gifts_report(engine)
    print_report(shown)


def print_report(shown: GiftTally) -> None:
    say("Per issue")
    for issue in shown.issues:
        clicks = ", ".join(f"{link.link_id} {link.clicks}" for link in issue.clicks)
        say(f"  {issue.reference or '#' + str(issue.issue_id)}  {issue.subject}")
        say(f"    {_sums(issue.sums)}; appeal clicks: {clicks or 'none counted'}")
    if not shown.issues:
        say("  no gift attributed to an issue yet")
    if shown.welcome.gifts:  # marked with the welcome series' reference
        say(f"Welcome mail: {_sums(shown.welcome)}")
    say(f"Not attributed: {_sums(shown.unattributed)}")
    say("Per month")
    for month, sums in shown.months.items():
        say(f"  {month}  {_sums(sums)}")
    if not shown.months:
        say("  no gifts imported yet (mailer donations import FILE)")


def _sums(sums: Sums) -> str:
    from mailer.fundraising import money

    amounts = ", ".join(money(minor, currency) for currency, minor in sorted(sums.amounts.items()))
    return f"{plural(sums.gifts, 'gift')}" + (f", {amounts}" if amounts else "")
