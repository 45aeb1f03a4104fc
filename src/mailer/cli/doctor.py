"""`mailer doctor`: is the From domain ready? It prints each check as OK, NOTE, WARNING or
PROBLEM, with what to change, and exits 1 when anything is a PROBLEM."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import typer

from mailer.cli.app import settings_of
from mailer.cli.output import plural, say

if TYPE_CHECKING:
    from mailer.doctor import Diagnosis, Finding


def doctor(
    ctx: typer.Context,
    dns: str | None = typer.Option(
        None,
        "--dns-server",
        metavar="HOST[:PORT]",
        help="Ask this DNS server instead of the system's (e.g. the zone's own server, "
        "before its records are published).",
    ),
) -> None:
    """Is the domain ready to send? Checks, for the From domain: SPF (the relay may send),
    DKIM (the published key is [dkim]'s), DMARC (a record, and a check that passes aligned
    with the From domain), that bounces can arrive, and the relay's TLS. Says what to fix;
    exit status 1 when something is a PROBLEM."""
    from mailer.doctor import diagnose, dns_server

    settings = settings_of(ctx)
    found = diagnose(settings, dns_server(dns) if dns else None)
    print_diagnosis(found)
    raise typer.Exit(1 if found.problems else 0)


def print_diagnosis(found: Diagnosis) -> None:
    say(f"The From domain: {found.from_domain}")
    say(f"SPF is checked for {found.envelope_domain}, {found.envelope_why}.")
    say(f"Asking {found.resolver}.")
    say()
    for finding in found.findings:
        say(line(finding))
        if finding.fix:
            say(textwrap.fill(finding.fix, 100, initial_indent=" " * 18 + "Fix: ",
                              subsequent_indent=" " * 23, break_long_words=False,
                              break_on_hyphens=False))  # fmt: skip
    say()
    problems, warnings = len(found.problems), len(found.warnings)
    if problems:
        say(
            f"{plural(problems, 'problem')}, {plural(warnings, 'warning')}: mail may be "
            "refused, junked or its bounces lost until the problems are fixed."
        )
    elif warnings:
        say(f"No problems; {plural(warnings, 'warning')} worth fixing.")
    else:
        say("The domain is ready.")


def line(finding: Finding) -> str:
    """LEVEL  TOPIC  what was found, as one line a person scans down."""
    return f"{finding.level:<8} {finding.topic:<8} {finding.says}"
