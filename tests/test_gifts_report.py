"""`mailer donations import` and `report` as a user runs them: every sample file
imported (twice), then what each issue raised, beside its appeal links' clicks, per
month, and what no issue can claim, to the øre."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from mailer.delivery import deliver
from mailer.models import SUBSCRIBERS, DonorBy
from mailer.redirects import follow_link
from mailer.settings import Settings
from mailer.subscribers import add_subscriber
from mailer.testing import RecordingHandler, mailer_on, new_issue

DATA = Path(__file__).parent / "data" / "gifts"
FILES = (
    "statement-001.02.xml",
    "statement-001.08.xml",
    "statement-bank-namespace.xml",
    "vipps-settlement-report.csv",
    "gifts.csv",
)


def filled(name: str, directory: Path, a: str, b: str) -> Path:
    """A sample file with the references of the test's issues filled in."""
    text = (DATA / name).read_text(encoding="utf-8")
    for mark, reference in {
        "issue_a": a,
        "issue_a_spaced": a.lower().replace("-", " ")[:-2] + " " + a[-2:],
        "issue_a_joined": a.replace("-", ""),
        "issue_a_mistyped": a[:-2] + str((int(a[-2]) + 1) % 10) + a[-1],
        "issue_b": b,
    }.items():
        text = text.replace("{" + mark + "}", reference)
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


# one backend: the command line is the same on both, and what it stores is tested on both
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_imports_and_the_report_through_the_command_line(
    settings: Settings, engine: Engine, smtp: RecordingHandler, tmp_path: Path
) -> None:
    appeal = settings.replace(
        donation={"url": "https://dawatmedia.example/donate",
                  "vipps_link": "https://qr.vipps.no/donations/557320"}
    )  # fmt: skip
    a = new_issue(engine, appeal, tmp_path)
    b = new_issue(engine, appeal, tmp_path, 1)
    add_subscriber(engine, "reader000@example.org", "Reader Zero", confirmed=True)
    assert deliver(engine, appeal, a).sent == 1
    for link in ("donate", "donate", "donate", "vipps"):
        assert follow_link(engine, a.reference, link, count=True)

    paths = [str(filled(name, tmp_path, a.reference, b.reference)) for name in FILES]
    shown = [mailer_on(settings, tmp_path, "donations", "import", path) for path in paths]
    assert all(done.returncode == 0 for done in shown), [done.stderr for done in shown]
    assert shown[0].stdout.splitlines() == [
        "statement-001.02.xml (camt): 5 new gifts, 1 already known",
        "  1 debits skipped",
        "  1 returned payments skipped",
        "  1 Vipps payouts skipped (the Vipps report holds their gifts)",
        "  3 attributed to issues, 0 matched to subscribers",
    ]
    assert shown[1].stdout.splitlines()[0] == (
        "statement-001.08.xml (camt): 2 new gifts, 1 already known"
    )
    assert "  1 entries not booked yet skipped" in shown[1].stdout.splitlines()
    assert shown[3].stdout.splitlines()[0] == (
        "vipps-settlement-report.csv (vipps): 2 new gifts, 1 already known"
    )
    assert shown[4].stdout.splitlines() == [
        "gifts.csv (csv): 3 new gifts, 0 already known",
        "  2 attributed to issues, 1 matched to subscribers",
    ]

    again = mailer_on(settings, tmp_path, "donations", "import", "--format", "camt",
                      str(tmp_path / FILES[0]))  # fmt: skip
    assert again.stdout.splitlines()[0] == (
        "statement-001.02.xml (camt): 0 new gifts, 6 already known"
    )

    report = mailer_on(settings, tmp_path, "donations", "report")
    assert report.returncode == 0, report.stderr
    assert report.stdout.splitlines() == [
        "Per issue",
        f"  {a.reference}  {a.subject}",
        "    5 gifts, 1300.25 NOK; appeal clicks: donate 3, vipps 1",
        f"  {b.reference}  News 1",
        "    5 gifts, 240.00 EUR, 2099.90 NOK; appeal clicks: donate 0, vipps 0",
        "Not attributed: 3 gifts, 1126.00 NOK",
        "Per month",
        "  2026-11  11 gifts, 40.00 EUR, 4426.15 NOK",
        "  2026-12  2 gifts, 200.00 EUR, 100.00 NOK",
    ]
    s = SUBSCRIBERS.c
    with engine.connect() as connection:
        donor = connection.execute(select(s.donor_by).where(s.email == "reader000@example.org"))
        assert donor.scalar_one() == DonorBy.GIFT


def test_a_broken_file_names_its_fault_and_exits_1(settings: Settings, tmp_path: Path) -> None:
    broken = tmp_path / "statement.xml"
    broken.write_text("<Document><BkToCstmrStmt><Stmt>\n<Ntry>\n</Stmt></Document>\n")
    done = mailer_on(settings, tmp_path, "donations", "import", str(broken))
    assert done.returncode == 1
    assert "statement.xml: not well-formed XML at line 3" in done.stderr
    assert "Traceback" not in done.stderr
    empty = mailer_on(settings, tmp_path, "donations", "report")
    assert empty.stdout.splitlines() == [
        "Per issue",
        "  no gift attributed to an issue yet",
        "Not attributed: 0 gifts",
        "Per month",
        "  no gifts imported yet (mailer donations import FILE)",
    ]
