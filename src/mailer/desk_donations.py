"""The desk's Donations page, as use cases: what each issue raised (with its appeal
links' clicks), per month and not attributed, as the page shows it; and an admin's upload
of a bank statement, a Vipps report or a plain CSV imported as `mailer donations import`
imports a file, and recorded in the audit log by its counts (never a name or address)."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from mailer import fundraising
from mailer.editors import record
from mailer.fundraising import GiftImport, GiftSource, Sums, money
from mailer.models import AuditAction
from mailer.settings import Settings

__all__ = ["DonationsPage", "GiftSource", "IssueRow", "donations_page", "import_upload"]

_SAFE_NAME = re.compile(r"[^\w.\- ]+")


@dataclass(frozen=True)
class IssueRow:
    issue_id: int
    reference: str
    subject: str
    gifts: int
    amounts: list[str]  # "1250.50 NOK", one per currency, exact
    clicks: list[tuple[str, int]]  # the appeal's links: ("donate", 12)


@dataclass(frozen=True)
class DonationsPage:
    issues: list[IssueRow]
    months: list[tuple[str, int, list[str]]]  # ("2026-11", gifts, amounts)
    unattributed: tuple[int, list[str]]  # gifts, amounts
    welcome: tuple[int, list[str]] = (0, [])  # marked with the welcome mails' reference

    @property
    def any_gift(self) -> bool:
        return bool(self.months)


def _amounts(sums: Sums) -> list[str]:
    return [money(minor, currency) for currency, minor in sorted(sums.amounts.items())]


def donations_page(engine: Engine) -> DonationsPage:
    """The gift report (`mailer donations report`), in the page's terms."""
    shown = fundraising.gifts_report(engine)
    issues = [
        IssueRow(
            issue.issue_id,
            issue.reference,
            issue.subject,
            issue.sums.gifts,
            _amounts(issue.sums),
            [(link.link_id, link.clicks) for link in issue.clicks],
        )
        for issue in shown.issues
    ]
    months = [(month, sums.gifts, _amounts(sums)) for month, sums in shown.months.items()]
    unattributed = (shown.unattributed.gifts, _amounts(shown.unattributed))
    welcome = (shown.welcome.gifts, _amounts(shown.welcome))
    return DonationsPage(issues, months, unattributed, welcome)


def import_upload(
    engine: Engine,
    settings: Settings,
    editor_id: int | None,
    filename: str,
    data: bytes,
    kind: GiftSource | None = None,
) -> GiftImport:
    """The upload imported from a temporary file under its own (cleaned) name, so an
    error names the file the admin chose; a file with an error imports nothing
    (MailerError). The audit log gets the counts."""
    shown = _SAFE_NAME.sub("_", Path(filename).name)[:100] or "gifts"
    with tempfile.TemporaryDirectory(prefix="mailer-gifts-") as folder:
        path = Path(folder) / shown
        path.write_bytes(data)
        done = fundraising.import_gifts(engine, settings, path, kind)
    detail = (
        f"{done.kind}: {done.new} new, {done.known} known, {done.attributed} attributed, "
        f"{done.matched} matched"
    )
    record(engine, editor_id, AuditAction.DONATIONS_IMPORTED, "donations import", detail)
    return done
