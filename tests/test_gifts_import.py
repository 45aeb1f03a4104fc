"""Importing what arrived (issue 15): bank statements in the camt.053 schema's real
structure (.001.02, .001.08 and a bank's own namespace), a Vipps settlement report and a
plain CSV become gifts stored once each, attributed to the issue whose reference the
giver typed; a gift matched to a reader's address makes them a donor; a broken file
changes nothing and names its fault."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, select, update

from mailer.fundraising import GiftSource, import_gifts
from mailer.gifts.attribution import references_in
from mailer.gifts.parsed import GiftFileError
from mailer.models import GIFTS, SUBSCRIBERS, DonorBy, Issue
from mailer.references import article_reference
from mailer.settings import Settings
from mailer.testing import import_readers, new_issue

DATA = Path(__file__).parent / "data" / "gifts"
ACCOUNT = "camt:NO9312030012345"  # the statements' account: a reference is unique on it
FILES = (
    "statement-001.02.xml",
    "statement-001.08.xml",
    "statement-bank-namespace.xml",
    "vipps-settlement-report.csv",
    "gifts.csv",
)


def mistyped(reference: str) -> str:
    """The reference with one digit wrong (the last before the check digit)."""
    digit = reference[-2]
    return reference[:-2] + str((int(digit) + 1) % 10) + reference[-1]


def gift_file(name: str, directory: Path, a: Issue, b: Issue, text: str | None = None) -> Path:
    """A sample file with the references of the test's issues filled in."""
    assert a.reference and b.reference
    filled = text or (DATA / name).read_text(encoding="utf-8")
    for mark, reference in {
        "issue_a": a.reference,
        "issue_a_spaced": a.reference.lower().replace("-", " ")[:-2] + " " + a.reference[-2:],
        "issue_a_joined": a.reference.replace("-", ""),
        "issue_a_mistyped": mistyped(a.reference),
        "issue_b": b.reference,
    }.items():
        filled = filled.replace("{" + mark + "}", reference)
    path = directory / name
    path.write_text(filled, encoding="utf-8")
    return path


@pytest.fixture
def issues(engine: Engine, settings: Settings, tmp_path: Path) -> tuple[Issue, Issue]:
    return new_issue(engine, settings, tmp_path), new_issue(engine, settings, tmp_path, 1)


def gifts(engine: Engine) -> list[tuple[object, ...]]:
    c = GIFTS.c
    query = select(
        c.source_key, c.received_on, c.amount_minor, c.currency, c.reference, c.issue_id,
        c.payer_name, c.email, c.subscriber_id,
    ).order_by(c.source_key)  # fmt: skip
    with engine.connect() as connection:
        return [tuple(row) for row in connection.execute(query)]


def test_a_camt_053_001_02_statement_gives_its_credits_each_batched_transfer_apart(
    engine, settings, issues, tmp_path
):
    a, b = issues
    done = import_gifts(engine, settings, gift_file(FILES[0], tmp_path, a, b))
    assert done.kind == GiftSource.CAMT
    assert (done.new, done.known, done.debits, done.returns, done.payouts) == (5, 1, 1, 1, 1)
    assert done.attributed == 3
    assert [(key, amount, issue) for key, _, amount, _, _, issue, *_ in gifts(engine)] == [
        (f"{ACCOUNT}:DNB-0001", 50000, a.id),  # "gave dmc 26 4x": case and spaces forgiven
        (f"{ACCOUNT}:DNB-0004/DNB-0004-1", 100000, b.id),  # the structured reference
        (f"{ACCOUNT}:DNB-0004/DNB-0004-2", 30025, a.id),
        (f"{ACCOUNT}:DNB-0004/DNB-0004-3", 5050, None),  # no reference: not attributed
        (f"{ACCOUNT}:DNB-0006", 7500, None),  # one digit wrong: no issue's
    ]
    names = {row[0]: row[6] for row in gifts(engine)}
    assert names[f"{ACCOUNT}:DNB-0004/DNB-0004-2"] == "Per Olsen"


def test_a_camt_053_001_08_statement_and_a_banks_own_namespace_read_alike(
    engine, settings, issues, tmp_path
):
    a, b = issues
    november = import_gifts(engine, settings, gift_file(FILES[0], tmp_path, a, b))
    december = import_gifts(engine, settings, gift_file(FILES[1], tmp_path, a, b))
    # the overlapping entry (DNB-0001) was counted in November already
    assert (december.new, december.known, december.debits, december.pending) == (2, 1, 1, 1)
    own = import_gifts(engine, settings, gift_file(FILES[2], tmp_path, a, b))
    assert (own.new, own.attributed) == (1, 1)
    stored = {row[0]: row for row in gifts(engine)}
    assert len(stored) == november.new + 2 + 1
    euro = stored[f"{ACCOUNT}:2026120100001/2026-12-01/200.00"]
    assert euro[1:7] == (
        datetime(2026, 12, 1).date(),
        20000,
        "EUR",
        b.reference,
        b.id,
        "Hans Müller",
    )
    unnamed = [row for key, row in stored.items() if key.startswith(f"{ACCOUNT}:sha256:")]
    assert [(row[2], row[5], row[6]) for row in unnamed] == [(10000, a.id, "Nils Lie")]
    assert stored["camt:12030012345:NB-7781"][2:6] == (100000, "NOK", b.reference, b.id)


def test_a_camt_054_notification_reads_like_a_statement_and_counts_once(
    engine, settings, issues, tmp_path
):
    a, b = issues
    import_gifts(engine, settings, gift_file(FILES[0], tmp_path, a, b))
    done = import_gifts(engine, settings, gift_file("notification-054.001.02.xml", tmp_path, a, b))
    assert (done.kind, done.new, done.known, done.attributed) == (GiftSource.CAMT, 1, 1, 1)
    stored = {row[0]: row for row in gifts(engine)}
    assert stored[f"{ACCOUNT}:DNB-0010"][2:7] == (25000, "NOK", b.reference, b.id, "Sara Vik")


def test_the_same_files_imported_again_change_nothing(engine, settings, issues, tmp_path):
    a, b = issues
    paths = [gift_file(name, tmp_path, a, b) for name in FILES]
    first = [import_gifts(engine, settings, path) for path in paths]
    stored = gifts(engine)
    again = [import_gifts(engine, settings, path) for path in paths]
    assert gifts(engine) == stored
    assert [done.new for done in again] == [0] * len(FILES)
    assert [done.known for done in again] == [done.new + done.known for done in first]


def test_a_vipps_report_gives_its_transactions_and_skips_refunds_and_summaries(
    engine, settings, issues, tmp_path
):
    a, b = issues
    done = import_gifts(engine, settings, gift_file(FILES[3], tmp_path, a, b))
    assert done.kind == GiftSource.VIPPS
    assert (done.new, done.known, done.returns, done.attributed) == (2, 1, 1, 2)
    assert [row[:7] for row in gifts(engine)] == [
        ("vipps:5554795401", datetime(2026, 11, 11).date(), 15000, "NOK", a.reference, a.id,
         "Ola Nordmann"),
        ("vipps:5554795402", datetime(2026, 11, 11).date(), 9990, "NOK", b.reference, b.id,
         "Kari Hansen"),
    ]  # fmt: skip


def test_a_vipps_report_with_renamed_columns_reads_through_the_mapping(
    engine, settings, issues, tmp_path
):
    a, _b = issues
    renamed = settings.replace(
        donations={
            "vipps_date_column": "Dato",
            "vipps_amount_column": "Beløp",
            "vipps_currency_column": "",
            "vipps_transaction_column": "Transaksjons-ID",
            "vipps_message_column": "Melding",
            "vipps_name_column": "Navn",
            "vipps_email_column": "E-post",
        }
    )
    report = tmp_path / "vipps.csv"
    report.write_text(
        "Dato;Transaksjons-ID;Beløp;Melding;Navn;E-post\n"
        f"2026-11-03;9001;1 234,50;Til {a.reference};Ola;reader000@example.org\n",
        encoding="utf-8",
    )
    import_readers(engine, tmp_path, 1)
    done = import_gifts(engine, renamed, report, GiftSource.VIPPS)
    assert (done.new, done.attributed, done.matched) == (1, 1, 1)
    assert gifts(engine)[0][2:4] == (123450, "NOK")


def test_a_plain_csv_gift_matched_by_address_makes_the_reader_a_donor(
    engine, settings, issues, tmp_path
):
    """reader000 gave on 20 November: a donor for [donation] thank_donors_days (90) after;
    reader001's later date set by an admin is never shortened; reader002's earlier one
    is moved on."""
    a, b = issues
    import_readers(engine, tmp_path, 3)
    s = SUBSCRIBERS.c
    admin_date = datetime(2027, 12, 31, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(update(SUBSCRIBERS).where(s.email == "reader001@example.org")
                           .values(donor_until=admin_date, donor_by=DonorBy.ADMIN))  # fmt: skip
        connection.execute(update(SUBSCRIBERS).where(s.email == "reader002@example.org")
                           .values(donor_until=datetime(2026, 1, 1, tzinfo=UTC),
                                   donor_by=DonorBy.READER))  # fmt: skip
    path = gift_file(FILES[4], tmp_path, a, b)
    path.write_text(
        path.read_text()
        + "2026-11-22,100,NOK,,READER001@example.org,Reader One\n"
        + "2026-11-23,100,NOK,,reader002@example.org,\n"
        + "2026-11-24,100,NOK,,nobody@example.org,Reader Three\n",  # a name is not a match
        encoding="utf-8",
    )
    done = import_gifts(engine, settings, path)
    assert done.kind == GiftSource.CSV
    assert (done.new, done.attributed, done.matched) == (6, 2, 3)
    with engine.connect() as connection:
        donors = dict(
            (email, (until, by))
            for email, until, by in connection.execute(
                select(s.email, s.donor_until, s.donor_by).order_by(s.email)
            )
        )
    assert donors == {
        "reader000@example.org": (datetime(2027, 2, 18, tzinfo=UTC), DonorBy.GIFT),
        "reader001@example.org": (admin_date, DonorBy.ADMIN),
        "reader002@example.org": (datetime(2027, 2, 21, tzinfo=UTC), DonorBy.GIFT),
    }
    by_email = {row[7]: row for row in gifts(engine)}
    assert by_email["reader000@example.org"][2:6] == (25000, "NOK", a.reference, a.id)
    assert by_email["stranger@example.com"][2] == 100050  # "1 000,50"
    assert by_email["stranger@example.com"][8] is None
    assert by_email[None][2:6] == (4000, "EUR", b.reference, b.id)


def references_of_issue(number: int) -> str:
    return article_reference("DMC", number, datetime(2026, 3, 1, tzinfo=UTC))


def test_references_are_found_in_free_text_on_word_boundaries_with_the_check_digit():
    good = references_of_issue(14)  # DMC-2614x
    body = good.removeprefix("DMC-")
    assert references_in(f"Gave {good} 500 kr", "DMC") == [good]
    assert references_in(f"dmc {body[:2]} {body[2:]}, takk", "DMC") == [good]
    assert references_in(f"DMC{body}", "DMC") == [good]
    assert references_in(f"XDMC-{body}", "DMC") == []  # inside a word
    assert references_in(f"{good}7", "DMC") == []  # runs on into another number
    assert references_in(mistyped(good), "DMC") == []


BROKEN_XML = [
    ("</Ntry>\n    </Stmt>", "</Stmt>", "not well-formed XML at line"),
    ('<Amt Ccy="NOK">75.00</Amt>', "", "entry 6 (line 107): the amount (Amt) is missing"),
    ('<Amt Ccy="NOK">75.00</Amt>', '<Amt Ccy="NOK">75,0.0x</Amt>', "entry 6 (line 107): Amt"),
    ('<Amt Ccy="NOK">50.50</Amt>', "<Amt>50.505</Amt>", "TxDtls 3 (line 84): Amt"),
    ('<Amt Ccy="NOK">75.00</Amt>', '<Amt Ccy="NOK">-75.00</Amt>', "(line 107): Amt is negative"),
]


@pytest.mark.parametrize(("old", "new", "fault"), BROKEN_XML)
def test_a_broken_statement_changes_nothing_and_names_the_element(
    engine, settings, issues, tmp_path, old, new, fault
):
    a, b = issues
    import_gifts(engine, settings, gift_file(FILES[2], tmp_path, a, b))
    before = gifts(engine)
    text = (DATA / FILES[0]).read_text(encoding="utf-8")
    assert old in text
    broken = gift_file(FILES[0], tmp_path, a, b, text.replace(old, new, 1))
    with pytest.raises(GiftFileError, match=re.escape(fault)):
        import_gifts(engine, settings, broken)
    assert gifts(engine) == before


def test_a_statement_with_entities_is_refused(engine, settings, tmp_path):
    hostile = tmp_path / "statement.xml"
    hostile.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        "<Document><BkToCstmrStmt><Stmt><Ntry><Amt Ccy='NOK'>1</Amt>"
        "<CdtDbtInd>CRDT</CdtDbtInd><BookgDt><Dt>2026-11-01</Dt></BookgDt>"
        "<AddtlNtryInf>&x;</AddtlNtryInf></Ntry></Stmt></BkToCstmrStmt></Document>\n"
    )
    with pytest.raises(GiftFileError, match="no DOCTYPE"):
        import_gifts(engine, settings, hostile)
    assert gifts(engine) == []


@pytest.mark.parametrize(
    ("row", "fault"),
    [
        ("2026-11-25,12.3x,NOK,,,", r"gifts.csv: line 3: amount: '12.3x' is not an amount"),
        ("2026-13-25,12,NOK,,,", r"gifts.csv: line 3: date: '2026-13-25' is not a date"),
        ("2026-11-25,,NOK,,,", r"gifts.csv: line 3: the amount is missing"),
        ("2026-11-25,12,NOK,,not-an-address,", r"gifts.csv: line 3: email: 'not-an-address'"),
        ("2026-11-25,12,NOK", r"gifts.csv: line 3: 3 fields, the header has 6"),
    ],
)
def test_a_bad_csv_row_changes_nothing_and_names_the_line(
    engine, settings, issues, tmp_path, row, fault
):
    broken = tmp_path / "gifts.csv"
    broken.write_text(
        "date,amount,currency,reference,email,name\n"
        "2026-11-24,100,NOK,,,\n"
        f"{row}\n"
        "2026-11-26,100,NOK,,,\n"
    )
    with pytest.raises(GiftFileError, match=fault):
        import_gifts(engine, settings, broken)
    assert gifts(engine) == []


SAVINGS_TRANSFER = """<Ntry>
  <Amt Ccy="NOK">20000.00</Amt>
  <CdtDbtInd>CRDT</CdtDbtInd>
  <Sts>BOOK</Sts>
  <BookgDt><Dt>2026-11-20</Dt></BookgDt>
  <AcctSvcrRef>DNB-0099</AcctSvcrRef>
  <NtryDtls><TxDtls>
    <RltdPties>
      <Dbtr><Nm>Dawat Media Center</Nm></Dbtr>
      <DbtrAcct><Id><IBAN>NO8912030054321</IBAN></Id></DbtrAcct>
    </RltdPties>
    <RmtInf><Ustrd>Fra sparekonto</Ustrd></RmtInf>
  </TxDtls></NtryDtls>
</Ntry>
</Stmt>"""


def test_a_credit_from_the_newsrooms_own_account_is_a_transfer_not_a_gift(
    engine, settings, issues, tmp_path
):
    a, b = issues
    statement = (DATA / FILES[0]).read_text(encoding="utf-8")
    with_transfer = statement.replace("</Stmt>", SAVINGS_TRANSFER, 1)
    ours = settings.replace(donations={"own_accounts": ["NO89 1203 0054 321"]})
    done = import_gifts(engine, ours, gift_file(FILES[0], tmp_path, a, b, with_transfer))
    assert (done.new, done.transfers, done.debits) == (5, 1, 1)
    assert not [row for row in gifts(engine) if str(row[0]).endswith("DNB-0099")]
