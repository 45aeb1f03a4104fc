"""DKIM: a key made by `mailer dkim keygen` signs every message, and the signatures
verify with dkimpy against the DNS record it printed. Our signer (OpenSSL RSA) makes the
very header dkimpy's `dkim.sign` makes, byte for byte."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mailer.articles import boilerplate, ingest_file
from mailer.delivery import deliver
from mailer.demo import SAMPLE_ARTICLE
from mailer.errors import ConfigError, MailerError
from mailer.issues import article_issue
from mailer.messages import MessageBuilder, Recipient
from mailer.models import Article, utcnow
from mailer.render import render_article_issue
from mailer.settings import Dkim
from mailer.signing import SIGNED_HEADERS, Signer, generate_key, txt_value
from mailer.sources import read_article
from mailer.subscribers import add_subscriber
from mailer.testing import make_settings


def test_every_message_is_signed_and_verifies(engine, settings, smtp, tmp_path):
    key = tmp_path / "dkim" / "mail2026.pem"
    record = generate_key(key, "mail2026", "dawatmedia.example")
    assert record.startswith('mail2026._domainkey.dawatmedia.example. IN TXT "v=DKIM1; k=rsa;')
    assert oct(key.stat().st_mode)[-3:] == "600"
    signed = settings.replace(
        dkim={"domain": "dawatmedia.example", "selector": "mail2026", "private_key_path": str(key)}
    )
    for address in ("ana@example.org", "bo@example.org"):
        add_subscriber(engine, address, confirmed=True)
    article = ingest_file(engine, signed, SAMPLE_ARTICLE).article
    assert deliver(engine, signed, article_issue(engine, signed, article)).sent == 2

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail2026._domainkey.dawatmedia.example."
        return txt_value(record)

    for received in smtp.received:
        assert received.data.startswith(b"DKIM-Signature:")
        assert dkim.verify(received.data, dnsfunc=dns)
        header = received.message["DKIM-Signature"]
        covered = re.search(r"h=([^;]+)", str(header)).group(1)
        covered_names = {name.strip().lower() for name in covered.split(":")}
        assert {h.decode().lower() for h in SIGNED_HEADERS} <= covered_names
        tampered = received.data.replace(b"Subject: ", b"Subject: FWD ", 1)
        assert not dkim.verify(tampered, dnsfunc=dns)


def test_an_incomplete_or_missing_dkim_key_is_refused(settings, tmp_path):
    with pytest.raises(ConfigError, match="set domain, selector and private_key_path together"):
        settings.replace(dkim={"domain": "dawatmedia.example"})
    with pytest.raises(ConfigError, match="expected a PEM private key file"):
        settings.replace(
            dkim={
                "domain": "dawatmedia.example",
                "selector": "s",
                "private_key_path": str(tmp_path),
            }
        )


DOMAIN, SELECTOR = "dawatmedia.example", "mail2026"
READERS = {
    "plain": Recipient(1, "ana@example.org", "Ana"),
    "encoded name": Recipient(2, "aase@example.no", "Åse Ødegård-Østby"),
    "folded name": Recipient(3, "long@example.org", "A Name Long Enough To Need Folding " * 3),
}
# The builder's headers over bodies it does not make itself (its QP never ends a line in
# white space), for the corners of relaxed body canonicalisation.
BODIES = {
    "trailing white space": b"Line one   \r\nLine\t\ttwo \t\r\n   \r\n\t\r\n\r\n\r\n",
    "blank lines only": b" \r\n\r\n",
    "empty body": b"",
}


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> tuple[Path, str]:
    """A key file and its DNS record, as `mailer dkim keygen` makes them."""
    path = tmp_path_factory.mktemp("dkim") / f"{SELECTOR}.pem"
    return path, generate_key(path, SELECTOR, DOMAIN)


@pytest.fixture(scope="module", params=[*READERS, "white space in headers", *BODIES])
def message(request, builder) -> bytes:
    """An unsigned message as the builder makes it, or with one corner changed."""
    data = builder.build(READERS.get(request.param, READERS["plain"])).data
    if request.param == "white space in headers":
        return data.replace(b"Subject: ", b"Subject:\t  \r\n\t ", 1)
    if request.param in BODIES:
        return data.partition(b"\r\n\r\n")[0] + b"\r\n\r\n" + BODIES[request.param]
    return data


def dns_for(
    key: tuple[Path, str], domain: str = DOMAIN, selector: str = SELECTOR
) -> Callable[..., bytes]:
    """What dkim.verify looks up: the record printed with the key."""

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == f"{selector}._domainkey.{domain}.".encode()
        return txt_value(key[1])

    return dns


def ours_and_dkimpys(
    settings: Dkim, message: bytes, monkeypatch: pytest.MonkeyPatch
) -> tuple[bytes, bytes]:
    """Our DKIM-Signature header for `message` and dkim.sign's. dkim.sign takes no
    timestamp, so its clock is set to the second in our t=."""
    ours = Signer(settings).sign(message).removesuffix(message)
    when = int(re.search(rb"\bt=(\d+);", ours).group(1))
    monkeypatch.setattr(dkim, "time", SimpleNamespace(time=lambda: when))
    theirs = dkim.sign(
        message,
        settings.selector.encode(),
        settings.domain.encode(),
        Path(settings.private_key_path).read_bytes(),
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=SIGNED_HEADERS,
    )
    return ours, theirs


def test_our_header_is_dkimpys_byte_for_byte_and_verifies(key, message, monkeypatch):
    settings = Dkim(domain=DOMAIN, selector=SELECTOR, private_key_path=str(key[0]))
    ours, theirs = ours_and_dkimpys(settings, message, monkeypatch)
    assert ours == theirs
    assert dkim.verify(ours + message, dnsfunc=dns_for(key))


@pytest.mark.parametrize(
    ("domain", "selector"),
    [("news.example.org", "s"), ("dawat-media.co.uk", "s"),  # first line full, or one over
     ("a-longer-newsroom-name.example.org", "mail2026-03"),
     ("d" * 52 + ".example", "s" * 60)],  # the longest the signer takes
)  # fmt: skip
def test_the_header_folds_like_dkimpys_whatever_the_names(key, domain, selector, monkeypatch):
    """Where the lines break depends on the lengths of d=, i= and s=."""
    settings = Dkim(domain=domain, selector=selector, private_key_path=str(key[0]))
    message = b"From: ana@example.org\r\nSubject: Hello\r\n\r\nHello\r\n"
    ours, theirs = ours_and_dkimpys(settings, message, monkeypatch)
    assert ours == theirs
    assert dkim.verify(ours + message, dnsfunc=dns_for(key, domain, selector))


def test_a_changed_subject_or_body_fails_verification(key, message):
    signer = Signer(Dkim(domain=DOMAIN, selector=SELECTOR, private_key_path=str(key[0])))
    signed, dns = signer.sign(message), dns_for(key)
    assert dkim.verify(signed + b"  \r\n\r\n", dnsfunc=dns)  # relaxed: blank lines at the end
    assert not dkim.verify(signed.replace(b"Subject:", b"Subject: FWD", 1), dnsfunc=dns)
    assert not dkim.verify(signed + b"P.S. one more line\r\n", dnsfunc=dns)
    if message.endswith(b"--\r\n"):  # a built message: change a word inside its text
        at = signed.index(b"Moscow", signed.index(b"\r\n\r\n"))
        assert not dkim.verify(signed[:at] + b"Moskva" + signed[at + 6 :], dnsfunc=dns)


def test_a_bad_key_or_too_long_a_name_is_refused_when_the_signer_is_made(key, tmp_path):
    broken = tmp_path / "broken.pem"
    broken.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    curve = tmp_path / "ec.pem"
    curve.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    for path, reason in ((broken, "Could not deserialize"), (curve, "not an RSA key")):
        settings = Dkim(domain=DOMAIN, selector=SELECTOR, private_key_path=str(path))
        with pytest.raises(MailerError, match=f"cannot sign with the DKIM key .*{reason}"):
            Signer(settings)
    # one more, and the header would fold inside d= or i=
    settings = Dkim(domain="d" * 53 + ".example", selector="s", private_key_path=str(key[0]))
    with pytest.raises(MailerError, match="over 60 characters"):
        Signer(settings)


@pytest.mark.parametrize("bits", [2104, 2536])
def test_keys_of_odd_sizes_make_a_well_formed_header(tmp_path, bits):
    """dkimpy's folding cuts the CRLF after b= in two (2104 bits) or off onto a line of
    its own (2536); ours ends the last line there. Otherwise the two are the same."""
    path = tmp_path / "odd.pem"
    record = generate_key(path, SELECTOR, DOMAIN, bits=bits)
    signer = Signer(Dkim(domain=DOMAIN, selector=SELECTOR, private_key_path=str(path)))
    message = b"From: ana@example.org\r\nSubject: Hello\r\n\r\nHello\r\n"
    signed = signer.sign(message)
    lines = signed.removesuffix(message).split(b"\r\n")
    assert lines.pop() == b""
    assert all(b"\r" not in line and b"\n" not in line and line.strip() for line in lines)
    assert all(line.startswith(b" ") and len(line) <= 72 for line in lines[1:])
    assert dkim.verify(signed, dnsfunc=dns_for((path, record)))


def test_the_builders_prepared_relaxed_forms_are_the_messages(tmp_path, monkeypatch):
    """The builder hands the signer a body form assembled from pieces prepared once per
    issue, and the header's fields likewise: they must be what canonicalising the whole
    body and header gives."""
    from mailer import signing

    key = tmp_path / "k.pem"
    generate_key(key, "s", "dawatmedia.example")
    dkim_keys = {"domain": "dawatmedia.example", "selector": "s", "private_key_path": str(key)}
    settings = make_settings(tmp_path, dkim=dkim_keys)
    article = read_article(SAMPLE_ARTICLE, boilerplate(settings))
    rendered = render_article_issue(settings, Article(**article.__dict__, ingested_at=utcnow()))
    builder = MessageBuilder(settings, rendered, issue_id=7)
    given: list[tuple[bytes, bytes, dict[bytes, bytes]]] = []
    original = signing.Signer.sign

    def sign(self, message: bytes, relaxed_body: bytes, fields: dict[bytes, bytes]) -> bytes:
        given.append((message, relaxed_body, fields))
        return original(self, message, relaxed_body, fields)

    monkeypatch.setattr(signing.Signer, "sign", sign)
    for recipient in (Recipient(1, "ana@example.org", "Ana  Lee"), Recipient(2, "b@example.org")):
        data = builder.build(recipient).data
        body = data.split(b"\r\n\r\n", 1)[1]  # after the (signed) headers
        message, relaxed_body, fields = given.pop()
        assert relaxed_body == signing._relaxed_body(body)
        # ... and so the header's fields, the shared ones prepared once per issue
        head = message.split(b"\r\n\r\n", 1)[0]
        assert fields == signing.relaxed_fields(head + b"\r\n")
        assert list(fields) == list(signing.relaxed_fields(head + b"\r\n"))
