"""Reading bounce emails: every message of the corpus (tests/data/bounces: flufl.bounce's
own samples and bounces written in the shapes Postfix, Exim, Sendmail, Exchange, Gmail,
Yahoo and Amazon SES produce) gives the failures, complaint, unsubscribe or reason to
ignore it that a person reading it would; and messages are read from files, folders,
Maildirs and mboxes. Pure functions: no database, no server."""

from __future__ import annotations

import hashlib
import mailbox
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailer.bounces.findings import Action, Bounce
from mailer.bounces.mailboxes import MailboxError, read_messages
from mailer.bounces.parse import read_bounce
from mailer.errors import MailerError
from mailer.tokens import VERP_DELIVERY, VERP_UNSUBSCRIBE

CORPUS = Path(__file__).parent / "data" / "bounces"
RETURN_PATH = "bounces@dawatmedia.example"
# the key the corpus's VERP addresses were signed with (tokens.verp_address)
KEYS = ("an-old-key", "corpus-signing-key")

FAILED, DELAYED = Action.FAILED, Action.DELAYED
COMPLAINT, UNSUBSCRIBE = Action.COMPLAINT, Action.UNSUBSCRIBE

# file -> [(action, recipient, status)] it reports, or the reason it is ignored
EXPECTED: dict[str, list[tuple[Action, str, str]] | str] = {
    # written in the shapes real servers send
    "postfix_user_unknown.eml": [(FAILED, "nobody.here@example.org", "5.1.1")],
    "postfix_delayed.eml": [(DELAYED, "slow.server@example.net", "4.4.1")],
    "exim_user_unknown.eml": [(FAILED, "old.reader@example.net", "5.1.1")],
    "sendmail_user_unknown.eml": [(FAILED, "gone.away@example.org", "5.1.1")],
    "office365_recipient_not_found.eml": [(FAILED, "former.staff@example.net", "5.1.10")],
    "exchange_two_recipients.eml": [
        (FAILED, "left.the.company@example.org", "5.1.1"),
        (FAILED, "full.mailbox@example.org", "5.2.2"),
    ],
    "gmail_no_such_user.eml": [(FAILED, "no.such.reader@example.org", "5.1.1")],
    "gmail_over_quota.eml": [(FAILED, "full.inbox@example.net", "5.2.2")],
    "yahoo_no_account.eml": [(FAILED, "no.account@example.net", "")],
    "yahoo_deferred.eml": [(DELAYED, "deferred.reader@example.org", "4.7.0")],
    "amazon_ses.eml": [(FAILED, "bounced.reader@example.org", "5.1.1")],
    "dsn_to_verp.eml": [(FAILED, "moved.away@example.net", "5.1.1")],
    "arf_complaint.eml": [(COMPLAINT, "annoyed.reader@example.net", "")],
    "arf_aol_redacted.eml": [(COMPLAINT, "", "")],
    "unsubscribe_request.eml": [(UNSUBSCRIBE, "kari.nordmann@example.org", "")],
    "vacation_reply.eml": "auto-reply",
    "outlook_automatic_reply.eml": "auto-reply",
    "read_receipt.eml": "read receipt",
    "garbage_empty.eml": "unreadable: empty",
    "garbage_random.eml": "unreadable: no mail headers",
    "garbage_truncated_multipart.eml": "unreadable: truncated or broken MIME",
    # flufl.bounce's samples (see flufl/NOTICE)
    "flufl/aol_01.txt": [(FAILED, "screenname@aol.com", "")],
    "flufl/dsn_01.txt": [(FAILED, "userx@example.com", "5.0.0")],
    "flufl/dsn_05.txt": [(DELAYED, "userx@example.cz", "4.4.1")],
    "flufl/dsn_11.txt": [(FAILED, "joem@example.com", "5.1.1")],
    "flufl/dsn_14.txt": [(FAILED, "userx@example.com.dk", "5.1.1")],
    "flufl/dsn_17.txt": [(DELAYED, "userx@example.fi", "4.3.0")],
    "flufl/exim_01.txt": [(FAILED, "userx@its.example.nl", "5.1.1")],
    "flufl/microsoft_01.txt": [(FAILED, "userx@example.com", "")],
    "flufl/microsoft_03.txt": [(FAILED, "userx@example.com", "")],
    "flufl/postfix_01.txt": [(FAILED, "xxxxx@local.ie", "5.1.1")],
    "flufl/postfix_05.txt": [(FAILED, "userx@example.net", "")],
    "flufl/qmail_01.txt": [(FAILED, "userx@example.de", "")],
    "flufl/qmail_03.txt": [(FAILED, "userx@example.jp", "5.1.1")],
    "flufl/qmail_08.txt": "auto-reply",
    "flufl/sendmail_01.txt": [(FAILED, "zzzzz@nfg.nl", ""), (FAILED, "zzzzz@shaft.coal.nl", "")],
    "flufl/simple_01.txt": [(FAILED, "bbbsss@example.com", "")],
    "flufl/simple_03.txt": [(DELAYED, "userx@example.za", "")],
    "flufl/simple_15.txt": [(FAILED, "userx@example.be", "5.1.1")],
    "flufl/simple_21.txt": [(DELAYED, "userx@example.com", "")],
    "flufl/simple_43.txt": "not a bounce",
    "flufl/yahoo_11.txt": [(FAILED, "bad_user@aol.com", "5.1.1")],
    "flufl/yahoo_13.txt": [(FAILED, "bogus-address@example.net", "5.1.1")],
}


def read(name: str, keys: tuple[str, ...] = KEYS) -> Bounce:
    return read_bounce((CORPUS / name).read_bytes(), RETURN_PATH, keys)


def test_every_corpus_file_has_an_expectation() -> None:
    files = {
        path.relative_to(CORPUS).as_posix()
        for path in CORPUS.rglob("*")
        if path.is_file() and path.name != "NOTICE"
    }
    assert files == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_message_reads_as_a_person_would(name: str) -> None:
    bounce = read(name)
    expected = EXPECTED[name]
    assert bounce.key == hashlib.sha256((CORPUS / name).read_bytes()).hexdigest()
    if isinstance(expected, str):
        assert (bounce.failures, bounce.ignored.startswith(expected)) == ((), True), bounce
    else:
        assert bounce.ignored == ""
        assert [(f.action, f.recipient, f.status) for f in bounce.failures] == expected


def test_a_delivery_report_says_the_servers_words_on_one_line() -> None:
    """Gmail's multi-line 550-5.1.1 reply reads as one sentence, the "smtp;" gone."""
    (failure,) = read("gmail_no_such_user.eml").failures
    assert failure.diagnostic.startswith(
        "550 5.1.1 The email account that you tried to reach does not exist. Please try "
        "double-checking the recipient's email address for typos or unnecessary spaces."
    )
    assert "550-" not in failure.diagnostic
    mailbox_full = read("exchange_two_recipients.eml").failures[1]
    assert mailbox_full.diagnostic == (
        "554 5.2.2 mailbox full; "
        "STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded"
    )


def test_a_plain_text_bounce_gives_the_reply_near_the_address() -> None:
    (failure,) = read("exim_user_unknown.eml").failures
    assert failure.diagnostic.startswith(
        "550 5.1.1 <old.reader@example.net>: Recipient address rejected: User unknown"
    )
    (yahoo,) = read("yahoo_no_account.eml").failures
    assert "This user doesn't have a yahoo.com account" in yahoo.diagnostic
    # a reply far below the address is read whole, without the transcript after it
    (quota,) = read("flufl/simple_01.txt").failures
    assert quota.diagnostic == "552 Message for <bbbsss@example.com> would exceed mailbox quota"
    # Postfix's plain text wraps the reply: its indented lines carry it on
    (wrapped,) = read("flufl/postfix_01.txt").failures
    assert wrapped.diagnostic == "550 5.1.1 <xxxxx@local.ie>... User unknown"


@pytest.mark.parametrize(
    "name", ["postfix_user_unknown.eml", "exim_user_unknown.eml", "flufl/simple_01.txt"]
)
def test_a_message_with_windows_line_ends_reads_the_same(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    crlf = read_bounce(data.replace(b"\n", b"\r\n"), RETURN_PATH, KEYS)
    assert (crlf.failures, crlf.original_message_id) == (
        read(name).failures,
        read(name).original_message_id,
    )


def test_the_original_message_id_and_date_are_read() -> None:
    complaint = read("arf_complaint.eml")
    assert complaint.original_message_id == "<7.0123456789abcdef0123@dawatmedia.example>"
    assert complaint.failures[0].diagnostic == "abuse (Yahoo!-Mail-Feedback/2.0)"
    # the DSN's enclosed headers (text/rfc822-headers) and a plain bounce's quoted copy
    assert read("postfix_delayed.eml").original_message_id == (
        "<7.91ab44e0c2d35f1e7a02@dawatmedia.example>"
    )
    assert read("exim_user_unknown.eml").original_message_id == (
        "<7.c0ffee00112233445566@dawatmedia.example>"
    )
    # a report that encloses nothing: Gmail's X-Original-Message-ID field names it
    gmail = (CORPUS / "gmail_no_such_user.eml").read_bytes()
    bare = gmail[: gmail.index(b"--000000000000a1b2c30626f7d1e2\nContent-Type: message/rfc822")]
    assert read_bounce(bare, RETURN_PATH, KEYS).original_message_id == (
        "<7.6d6d6d6d6d6d6d6d6d6d@dawatmedia.example>"
    )
    # Gmail dates its report in PST: read as UTC
    assert read("gmail_no_such_user.eml").date == datetime(2026, 11, 30, 14, 35, 31, tzinfo=UTC)
    assert read("garbage_random.eml").date is None


def test_the_verp_token_names_the_delivery_and_a_forged_one_nothing() -> None:
    assert read("dsn_to_verp.eml").verp == (VERP_DELIVERY, 4711)
    assert read("arf_complaint.eml").verp == (VERP_DELIVERY, 4713)
    # AOL redacts the reader's address: only the token says whose complaint it is
    assert read("arf_aol_redacted.eml").verp == (VERP_DELIVERY, 4714)
    assert read("unsubscribe_request.eml").verp == (VERP_UNSUBSCRIBE, 4712)
    assert read("postfix_user_unknown.eml").verp is None
    # without the signing key the token is nobody's; without a bounce address, no VERP
    assert read("dsn_to_verp.eml", keys=("another-key",)).verp is None
    assert read_bounce((CORPUS / "dsn_to_verp.eml").read_bytes(), "", KEYS).verp is None
    forged = read("unsubscribe_request.eml", keys=("another-key",))
    assert (forged.failures, forged.ignored) == ((), "not a bounce")


@pytest.mark.parametrize("name", ["postfix_user_unknown.eml", "arf_complaint.eml"])
def test_no_cut_or_damaged_message_raises(name: str) -> None:
    data = (CORPUS / name).read_bytes()
    damaged = [data[:end] for end in range(0, len(data), 97)]
    damaged += [
        data.replace(b"\n", b"\r", 40),
        data.replace(b"--", b"\xff\xfe"),
        data.replace(b"us-ascii", b"x-no-such-charset").replace(b"Subject: ", b"Subject: =?x?q?"),
        data.replace(b"Content-Type: message/", b"Content-Type: message/\x80"),
        data * 2,
    ]
    for sample in damaged:
        bounce = read_bounce(sample, RETURN_PATH, KEYS)
        assert bounce.key == hashlib.sha256(sample).hexdigest()
        assert bool(bounce.failures) != bool(bounce.ignored)


def test_a_plain_bounce_without_a_from_or_with_8_bit_headers_still_reads() -> None:
    """flufl.bounce's detectors fail on both; the message is made fit for them first."""
    qmail = (CORPUS / "flufl/qmail_03.txt").read_bytes()
    no_from = qmail.replace(b"\nFrom: MAILER-DAEMON@", b"\nX-Was-From: MAILER-DAEMON@")
    postfix = (CORPUS / "flufl/postfix_01.txt").read_bytes()
    junk = postfix.replace(b"Description: Undelivered Message", b"Description: Undelivered \xe5")
    for sample, recipient in ((no_from, "userx@example.jp"), (junk, "xxxxx@local.ie")):
        bounce = read_bounce(sample, RETURN_PATH, KEYS)
        assert [(f.action, f.recipient) for f in bounce.failures] == [(FAILED, recipient)]


def _message(number: int) -> bytes:
    message = EmailMessage()
    message["From"] = "MAILER-DAEMON@relay.example.org"
    message["Subject"] = f"Undelivered Mail {number}"
    message.set_content(f"From the mail system: message {number}.\n")
    return message.as_bytes()


def test_read_messages_reads_a_file_a_folder_and_skips_hidden_files(tmp_path: Path) -> None:
    folder = tmp_path / "bounces"
    (folder / "older").mkdir(parents=True)
    (folder / "b.eml").write_bytes(_message(2))
    (folder / "a.eml").write_bytes(_message(1))
    (folder / "older" / "c.eml").write_bytes(_message(3))
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    single = tmp_path / "one.eml"
    single.write_bytes(_message(4))
    found = list(read_messages([folder, single]))
    assert found == [
        (f"{folder}/a.eml", _message(1)),
        (f"{folder}/b.eml", _message(2)),
        (f"{folder}/older/c.eml", _message(3)),
        (str(single), _message(4)),
    ]


def test_read_messages_reads_a_maildirs_new_and_cur(tmp_path: Path) -> None:
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    new_key = box.add(_message(1))
    seen = mailbox.MaildirMessage(_message(2))
    seen.set_subdir("cur")
    seen.set_flags("S")
    seen_key = box.add(seen)
    found = dict(read_messages([tmp_path / "Maildir"]))
    assert found == {
        f"{tmp_path}/Maildir/new/{new_key}": _message(1),
        f"{tmp_path}/Maildir/cur/{seen_key}:2,S": _message(2),
    }


def test_read_messages_reads_an_mbox_one_message_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "bounces.mbox"
    box = mailbox.mbox(path, create=True)
    for number in (1, 2, 3):
        box.add(_message(number))
    box.close()
    found = list(read_messages([path]))
    assert [name for name, _ in found] == [f"{path}#1", f"{path}#2", f"{path}#3"]
    assert [read_bounce(data, "", ()).ignored for _, data in found] == ["not a bounce"] * 3
    assert b"Subject: Undelivered Mail 3" in found[2][1]


def test_a_missing_path_is_an_error_that_names_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder"
    with pytest.raises(MailboxError, match="no-such-folder: no such file or folder") as raised:
        list(read_messages([missing]))
    assert isinstance(raised.value, MailerError)
