"""The per-recipient message, built fast from prepared parts, against the standard
library's EmailMessage building the same message: parsed back, they must say the same."""

from __future__ import annotations

import base64
import dataclasses
import email
import email.header
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

from mailer.articles import boilerplate
from mailer.demo import SAMPLE_ARTICLE
from mailer.messages import MessageBuilder, Recipient, fill, preview
from mailer.models import Article, utcnow
from mailer.render import one_line, render_article_issue
from mailer.settings import Settings
from mailer.sources import read_article
from mailer.testing import HOSTILE_NAMES, TEST_SECRET_KEY, make_settings

READERS = [
    Recipient(1, "ana@example.org", "Ana"),
    Recipient(2, "bo@example.org", None),
    Recipient(3, "aase@example.no", "Åse Ødegård-Østby"),
    Recipient(4, "quoted@example.org", 'Dr. "Q", Jr. (Oslo)'),
    Recipient(5, "long@example.org", "A Name Long Enough To Need Folding " * 3),
]


def reference(builder: MessageBuilder, recipient: Recipient, date: str) -> EmailMessage:
    """The same message the plain way: EmailMessage, set_content, add_alternative, and
    add_related for each image of the HTML."""
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
    for image in builder.rendered.images:
        message.get_body(("html",)).add_related(
            image.png, "image", "png", cid=f"<{image.cid}>", disposition="inline",
            filename=f"{image.name}.png",
        )  # fmt: skip
    return message


def structure(message: EmailMessage) -> list[str]:
    return [part.get_content_type() for part in message.walk()]


def image_parts(message: EmailMessage) -> list[tuple[str, str, str | None, bytes]]:
    """Each image part: its Content-ID, disposition, file name and bytes."""
    return [
        (part["Content-ID"], part.get_content_disposition(), part.get_filename(),
         part.get_content())
        for part in message.walk()
        if part.get_content_maintype() == "image"
    ]  # fmt: skip


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
    assert structure(ours) == structure(theirs)
    assert image_parts(ours) == image_parts(theirs) != []
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


def sample_article(settings: Settings) -> Article:
    draft = read_article(SAMPLE_ARTICLE, boilerplate(settings))
    return Article(guid=draft.guid, title=draft.title, summary=draft.summary,
                   body_html=draft.body_html, published_at=utcnow())  # fmt: skip


def sources(html_part: str) -> list[str]:
    return re.findall(r'<img\b[^>]*\bsrc="([^"]+)"', html_part)


def test_the_codes_travel_inside_the_message_as_related_parts(builder):
    """multipart/alternative { text/plain, multipart/related { text/html, one PNG per
    code } }: each "cid:" the HTML shows names a part of the message."""
    message = email.message_from_bytes(builder.build(READERS[0]).data, policy=email.policy.default)
    codes = builder.rendered.images
    assert [code.name for code in codes] == ["epc"]  # the shipped config: bank details
    assert structure(message) == [
        "multipart/alternative", "text/plain", "multipart/related", "text/html",
        *["image/png"] * len(codes),
    ]  # fmt: skip
    related = message.get_payload()[1]
    assert related.get_param("type") == "text/html"
    html_part = message.get_body(("html",)).get_content()
    shown = [src for src in sources(html_part) if src.startswith("cid:")]
    assert shown == [f"cid:{code.cid}" for code in codes]
    for part, code in zip(related.get_payload()[1:], codes, strict=True):
        assert part["Content-ID"] == f"<{code.cid}>"
        assert part["Content-Transfer-Encoding"] == "base64"
        assert part.get_content_disposition() == "inline"
        assert part.get_filename() == f"{code.name}.png"
        assert part.get_content() == code.png and code.png.startswith(b"\x89PNG\r\n")


def test_the_image_parts_are_base64_at_76_columns(builder):
    data = builder.build(READERS[0]).data
    code = builder.rendered.images[0]
    body = data.split(f"Content-ID: <{code.cid}>".encode())[1].split(b"\r\n\r\n")[1]
    lines = body.split(b"\r\n")
    assert all(len(line) == 76 for line in lines[:-1]) and 0 < len(lines[-1]) <= 76
    assert base64.b64decode(b"".join(lines)) == code.png


def test_without_codes_the_html_is_the_alternative_itself(tmp_path):
    """No bank details for a code and no Vipps link: no related part, no image."""
    settings = make_settings(tmp_path, donation={"bic": "", "account_holder": ""})
    rendered = render_article_issue(settings, sample_article(settings))
    assert rendered.images == ()
    data = MessageBuilder(settings, rendered, issue_id=7).build(READERS[0]).data
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert structure(message) == ["multipart/alternative", "text/plain", "text/html"]
    assert b"multipart/related" not in data and b"cid:" not in data


def test_a_signed_message_with_codes_verifies_with_dkimpy(tmp_path):
    """The image parts' relaxed form is prepared once per builder: the body hash must be
    the one a verifier computes over the whole message."""
    import dkim

    from mailer.signing import generate_key, txt_value

    key = tmp_path / "mail2026.pem"
    record = generate_key(key, "mail2026", "dawatmedia.example")
    settings = make_settings(
        tmp_path,
        dkim={"domain": "dawatmedia.example", "selector": "mail2026", "private_key_path": str(key)},
        donation={"vipps_link": "https://qr.vipps.no/donations/557320"},
    )
    rendered = render_article_issue(settings, sample_article(settings))
    assert [image.name for image in rendered.images] == ["vipps", "epc"]
    builder = MessageBuilder(settings, rendered, issue_id=7)
    for recipient in READERS:
        data = builder.build(recipient).data
        assert b"Content-Type: image/png" in data
        assert dkim.verify(data, dnsfunc=lambda name, timeout=5: txt_value(record))
        at = data.index(b"Content-Type: image/png")  # a changed image fails
        tampered = data[:at] + data[at:].replace(b"A", b"B", 1)
        assert not dkim.verify(tampered, dnsfunc=lambda name, timeout=5: txt_value(record))


def test_a_preview_shows_the_codes_from_data_uris(builder, tmp_path):
    """A draft has no public address: the preview carries its images itself."""
    shown = preview(make_settings(tmp_path), builder.rendered)
    assert "cid:" not in shown
    (code,) = builder.rendered.images
    uri = next(src for src in sources(shown) if src.startswith("data:"))
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.partition(",")[2]) == code.png


SUBJECTS = [
    "شورای شهر کابل بودجهٔ مکتب‌ها را دو برابر کرد و سهم شفاخانه‌ها را نیز بیشتر ساخت",
    "د کابل ښاروالۍ د راتلونکي کال بودیجه تصویب کړه او ښوونځیو ته یې ډېره برخه ورکړه",
    "Bystyret i Kabul doblet budsjettet til skolene – og sykehusene får også mer i år",
    "Moscow talks – “Format” and the long road to a ceasefire that everybody says they want",
]


@pytest.mark.parametrize("subject", SUBJECTS, ids=["dari", "pashto", "nb", "en"])
def test_a_long_subject_in_any_language_reads_back_with_every_space(builder, subject, tmp_path):
    """Folded over several lines as encoded words, a subject keeps every space: each is
    inside an encoded word, since readers drop the white space between two of them."""
    rendered = dataclasses.replace(builder.rendered, subject=subject)
    built = MessageBuilder(make_settings(tmp_path), rendered, issue_id=7).build(READERS[0])
    head = built.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    lines = head.split("\r\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("Subject:"))
    end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith(" "))
    assert all(len(line) <= 76 for line in lines[start:end])
    folded = " ".join(line.strip() for line in lines[start:end]).removeprefix("Subject: ")
    strict = "".join(
        part.decode(charset or "ascii") if isinstance(part, bytes) else part
        for part, charset in email.header.decode_header(folded)
    )  # RFC 2047 as mail clients read it
    assert strict == subject
    parsed = email.message_from_bytes(built.data, policy=email.policy.default)
    assert str(parsed["Subject"]) == subject
