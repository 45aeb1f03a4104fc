"""The per-recipient message, built fast from prepared parts, against the standard
library's EmailMessage building the same message: parsed back, they must say the same."""

from __future__ import annotations

import email
import email.policy
import html
import os
import re
import shutil
import subprocess
import types
from email.message import EmailMessage
from email.utils import formataddr

import pytest

from mailer.messages import MessageBuilder, Recipient, fill
from mailer.render import one_line
from mailer.testing import HOSTILE_NAMES, TEST_SECRET_KEY, make_settings

READERS = [
    Recipient(1, "ana@example.org", "Ana"),
    Recipient(2, "bo@example.org", None),
    Recipient(3, "aase@example.no", "Åse Ødegård-Østby"),
    Recipient(4, "quoted@example.org", 'Dr. "Q", Jr. (Oslo)'),
    Recipient(5, "long@example.org", "A Name Long Enough To Need Folding " * 3),
]


def reference(builder: MessageBuilder, recipient: Recipient, date: str) -> EmailMessage:
    """The same message the plain way: EmailMessage, set_content, add_alternative."""
    url = builder.unsubscribe_url(recipient.public_id)
    settings_url = builder.preferences_url(recipient.public_id)
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = formataddr(("Dawat Media Center", "newsletter@dawatmedia.example"))
    message["To"] = formataddr((one_line(recipient.name or ""), recipient.email))
    message["Reply-To"] = "editor@dawatmedia.example"
    message["Subject"] = builder.rendered.subject
    message["Date"] = date
    message["Message-ID"] = builder.message_id(recipient.subscriber_id)
    message["List-Id"] = "Dawat Media Center <newsletter.dawatmedia.example>"
    message["List-Unsubscribe"] = f"<{url}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(fill(builder.rendered.text, recipient.email, url, settings_url))
    html_part = fill(builder.rendered.html, html.escape(recipient.email), url, settings_url)
    message.add_alternative(html_part, subtype="html")
    return message


@pytest.mark.parametrize("recipient", READERS, ids=lambda r: r.email)
def test_built_message_parses_back_like_the_standard_librarys(builder, recipient, monkeypatch):
    # tokens carry the second they were made: one clock, so both messages get the same
    monkeypatch.setattr("mailer.tokens.time", types.SimpleNamespace(time=lambda: 1_796_000_000.0))
    built = builder.build(recipient)
    ours = email.message_from_bytes(built.data, policy=email.policy.default)
    theirs = email.message_from_bytes(
        reference(builder, recipient, ours["Date"]).as_bytes(), policy=email.policy.default
    )
    for name in ("From", "To", "Reply-To", "Subject", "Date", "Message-ID", "List-Id",
                 "List-Unsubscribe", "List-Unsubscribe-Post", "MIME-Version"):  # fmt: skip
        assert str(ours[name]) == str(theirs[name]), name
    assert ours.get_content_type() == "multipart/alternative"
    for kind in ("plain", "html"):
        assert ours.get_body((kind,)).get_content() == theirs.get_body((kind,)).get_content()
        assert ours.get_body((kind,)).get_content_charset() == "utf-8"
    assert ours.defects == [] and all(part.defects == [] for part in ours.walk())


@pytest.mark.parametrize("recipient", READERS, ids=lambda r: r.email)
def test_the_wire_bytes_are_clean(builder, recipient):
    data = builder.build(recipient).data
    lines = data.split(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b""), "CRLF line endings only"
    long = [line for line in lines if len(line) > 78]
    assert all(line.startswith(b"List-Unsubscribe: <https://") for line in long)
    assert data.isascii()


def test_the_message_id_is_stable_per_delivery_and_distinct_between(builder):
    first, again = builder.build(READERS[0]), builder.build(READERS[0])
    assert first.message_id == again.message_id
    assert first.message_id != builder.build(READERS[1]).message_id
    # the issue and a keyed tag: the reader's id is not in it
    assert re.fullmatch(r"<7\.[0-9a-f]{20}@dawatmedia\.example>", first.message_id)


def test_the_token_maker_makes_the_tokens_itsdangerous_makes():
    from mailer.tokens import UNSUBSCRIBE, TokenMaker, make_token, read_token

    maker = TokenMaker(TEST_SECRET_KEY, UNSUBSCRIBE)
    for subscriber_id in (1, 42, 10**9):
        for _ in range(3):  # the two may straddle a second: the timestamp differs then
            ours, reference = (
                maker(subscriber_id),
                make_token(TEST_SECRET_KEY, UNSUBSCRIBE, subscriber_id),
            )
            if ours == reference:
                break
        assert ours == reference
        assert read_token(TEST_SECRET_KEY, UNSUBSCRIBE, ours) == subscriber_id


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_name_is_one_display_name_of_the_one_recipient(builder, tmp_path, name):
    """In an issue and in the confirmation link alike: no second address in To:, no
    header added, no raw control character, and the name reads back as it was given."""
    from mailer.render import render_confirmation
    from mailer.subscribers import without_controls

    settings = make_settings(tmp_path)
    address = "reader@example.org"
    confirmation = render_confirmation(settings, address, name, "https://x.example/confirm/t")
    for built in (
        builder.build(Recipient(9, address, name)),
        MessageBuilder(settings, confirmation).build(Recipient(9, address, name)),
    ):
        message = email.message_from_bytes(built.data, policy=email.policy.default)
        (to,) = message["To"].addresses
        assert to.addr_spec == address and len(message.get_all("To")) == 1
        assert message["Bcc"] is None and message["Cc"] is None
        # white space aside: a reader may join encoded words with or without a space
        assert to.display_name.split() == without_controls(name).split() or "".join(
            to.display_name.split()
        ) == "".join(without_controls(name).split())
        head = built.data.split(b"\r\n\r\n")[0]
        assert all(32 <= byte < 127 or byte in b"\r\n\t" for byte in head)
        assert message.defects == []


SPAMASSASSIN = shutil.which("spamassassin")


@pytest.mark.skipif(SPAMASSASSIN is None, reason="Debian's spamassassin is not installed")
def test_spamassassin_scores_an_issue_message_at_most_half_a_point(builder, tmp_path):
    """Offline rules only (-L); the hidden preheader once cost 0.7 (HTML_FONT_LOW_CONTRAST)."""
    data = builder.build(READERS[0]).data
    env = {**os.environ, "HOME": str(tmp_path)}  # its user preferences go there, not to ~
    checked = subprocess.run(
        [str(SPAMASSASSIN), "-L", "-t"], input=data, capture_output=True, env=env, timeout=120
    )
    report = checked.stdout.decode("utf-8", "replace")
    status = re.search(r"^X-Spam-Status: \w+, score=(-?[\d.]+).*?tests=([^\n]*(?:\n\s+[^\n]*)*)",
                       report, re.MULTILINE)  # fmt: skip
    assert status is not None, checked.stderr.decode("utf-8", "replace")
    assert float(status.group(1)) <= 0.5, f"rules that fired: {' '.join(status.group(2).split())}"
