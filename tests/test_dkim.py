"""DKIM: a key made by `mailer dkim keygen` signs every message, and the signatures
verify with dkimpy against the DNS record it printed."""

from __future__ import annotations

import re

import dkim
import pytest

from mailer.articles import ingest_file
from mailer.delivery import deliver
from mailer.demo import SAMPLE_ARTICLE
from mailer.errors import ConfigError
from mailer.issues import article_issue
from mailer.signing import SIGNED_HEADERS, generate_key, txt_value
from mailer.subscribers import add_subscriber


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
