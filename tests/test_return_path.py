"""The return path: with [bounces] address set, each message's envelope sender is a VERP
address naming its delivery or transactional mail, and List-Unsubscribe has a mailto:
naming the delivery; every issue message has a signed Feedback-ID. Sent through a real
SMTP server on 127.0.0.1."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dkim
import pytest
from aiosmtpd.smtp import Envelope, Session
from sqlalchemy import Engine, select

from mailer.delivery import deliver
from mailer.errors import DeliveryError
from mailer.models import DELIVERIES, SUBSCRIBERS, TRANSACTIONAL_MAILS
from mailer.settings import Settings
from mailer.signing import generate_key, txt_value
from mailer.testing import RecordingHandler, import_readers, new_issue, smtp_server
from mailer.tokens import read_verp
from mailer.transactional import queue_confirmation, send_queued

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

# mixed case, as a newsroom may write it: a server that lower-cases it still reads back
ADDRESS = "Bounces@dawatmedia.example"
MAILTO = re.compile(r"<mailto:([^?>]+)\?subject=unsubscribe>")


def delivery_ids(engine: Engine) -> dict[str, int]:
    """Each reader's delivery id, by address."""
    query = select(SUBSCRIBERS.c.email, DELIVERIES.c.id).join(
        SUBSCRIBERS, SUBSCRIBERS.c.id == DELIVERIES.c.subscriber_id
    )
    with engine.connect() as connection:
        return {email: delivery_id for email, delivery_id in connection.execute(query)}


def mail_ids(engine: Engine) -> dict[str, tuple[int, str, str]]:
    """Each transactional mail's (id, status, last reply), by the subscriber's address."""
    mails = TRANSACTIONAL_MAILS.c
    query = select(SUBSCRIBERS.c.email, mails.id, mails.status, mails.last_reply).join(
        SUBSCRIBERS, SUBSCRIBERS.c.id == mails.subscriber_id
    )
    with engine.connect() as connection:
        return {email: (i, status, reply) for email, i, status, reply in connection.execute(query)}


def signed(settings: Settings, tmp_path: Path) -> tuple[Settings, bytes]:
    """The settings with DKIM on (a 1024-bit key: quick to make), and the key's record."""
    key = tmp_path / "dkim.pem"
    record = generate_key(key, "s1", "dawatmedia.example", bits=1024)
    dkim_keys = {"domain": "dawatmedia.example", "selector": "s1", "private_key_path": str(key)}
    return settings.replace(dkim=dkim_keys), txt_value(record)


def test_each_envelope_sender_and_mailto_name_the_readers_delivery(
    engine, settings, smtp, tmp_path
):
    """Each envelope sender reads back to its reader's delivery, in any case; the mailto:
    beside the https unsubscribe to the same delivery; Feedback-ID names the issue, and
    DKIM signs it and List-Unsubscribe. From and Reply-To stay the newsroom's."""
    sending, record = signed(settings.replace(bounces={"address": ADDRESS}), tmp_path)
    readers = import_readers(engine, tmp_path, 3)
    issue = new_issue(engine, sending, tmp_path)
    assert deliver(engine, sending, issue).sent == 3
    ids, keys = delivery_ids(engine), sending.signing_keys
    assert sorted(r for m in smtp.received for r in m.rcpt_tos) == readers
    for received in smtp.received:
        (reader,) = received.rcpt_tos
        assert received.mail_from.startswith("Bounces+d")
        for mail_from in (received.mail_from, received.mail_from.lower()):
            assert read_verp(keys, ADDRESS, mail_from) == ("d", ids[reader])
        message = received.message
        assert message["From"].addresses[0].addr_spec == "newsletter@dawatmedia.example"
        unsubscribe = received.data.split(b"\r\nList-Unsubscribe: ", 1)[1].split(b"\r\n")[0]
        https, mailto = unsubscribe.decode("ascii").split(", ")
        assert https.startswith("<https://dawatmedia.example/") and "unsubscribe" in https
        token = MAILTO.fullmatch(mailto)
        assert token is not None and read_verp(keys, ADDRESS, token[1]) == ("u", ids[reader])
        assert message["Feedback-ID"] == f"{issue.id}:article:dawatmedia.example:mailer"
        header = str(message["DKIM-Signature"])
        covered = {name.strip() for name in re.search(r"h=([^;]+)", header)[1].split(":")}
        assert {"feedback-id", "list-unsubscribe"} <= covered
        assert dkim.verify(received.data, dnsfunc=lambda name, timeout=5: record)
        forged = received.data.replace(b"Feedback-ID: ", b"Feedback-ID: 1", 1)
        assert not dkim.verify(forged, dnsfunc=lambda name, timeout=5: record)


def test_a_confirmation_names_its_mail_and_has_no_mailto(engine, settings, smtp, tmp_path):
    (reader,) = import_readers(engine, tmp_path, 1)
    with engine.begin() as connection:
        connection.execute(SUBSCRIBERS.update().values(status="pending"))
        subscriber_id = connection.execute(select(SUBSCRIBERS.c.id)).scalar_one()
    assert queue_confirmation(engine, subscriber_id)
    sending = settings.replace(bounces={"address": ADDRESS})
    assert send_queued(engine, sending)["sent"] == 1
    (received,) = smtp.received
    mail_id = mail_ids(engine)[reader][0]
    assert read_verp(sending.signing_keys, ADDRESS, received.mail_from) == ("t", mail_id)
    assert "mailto:" not in received.message["List-Unsubscribe"]
    assert received.message["Feedback-ID"] is None


def test_without_the_address_the_envelope_sender_is_from_address(engine, settings, smtp, tmp_path):
    """As before the return path: no VERP, no mailto:; Feedback-ID all the same."""
    import_readers(engine, tmp_path, 2)
    issue = new_issue(engine, settings, tmp_path)
    assert deliver(engine, settings, issue).sent == 2
    for received in smtp.received:
        assert received.mail_from == "newsletter@dawatmedia.example"
        assert "mailto:" not in received.message["List-Unsubscribe"]
        assert received.message["Feedback-ID"] == f"{issue.id}:article:dawatmedia.example:mailer"


@dataclass
class LoginOnly(RecordingHandler):
    """A submission service that takes no envelope sender but the login's address: it
    says so at MAIL, or at RCPT (Postfix's reject_sender_login_mismatch, by default)."""

    at: str = "mail"

    async def handle_MAIL(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if "+" in address and self.at == "mail":
            return f"553 5.7.1 <{address}>: Sender address rejected: not owned by user"
        return await super().handle_MAIL(server, session, envelope, address, options)

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if "+" in envelope.mail_from and self.at == "rcpt":
            return f"553 5.7.1 <{envelope.mail_from}>: Sender address rejected: not owned by user"
        return await super().handle_RCPT(server, session, envelope, address, options)


@pytest.mark.parametrize("at", ["mail", "rcpt"])
def test_a_relay_that_refuses_the_return_path_stops_and_says_the_fix(
    engine, settings, tmp_path, at
):
    """Nothing is sent and nobody fails: the issue and the confirmation stay queued, and
    the message names the return path and what to do."""
    readers = import_readers(engine, tmp_path, 2)
    with smtp_server(LoginOnly(at=at)) as (_controller, relay):
        sending = settings.replace(smtp={"port": relay.port}, bounces={"address": ADDRESS})
        issue = new_issue(engine, sending, tmp_path)
        with pytest.raises(DeliveryError) as refused:
            deliver(engine, sending, issue)
        with engine.begin() as connection:
            connection.execute(SUBSCRIBERS.update().values(status="pending"))
            first = connection.execute(select(SUBSCRIBERS.c.id)).scalars().first()
        queue_confirmation(engine, first)
        assert send_queued(engine, sending)["sent"] == 0
    assert relay.received == []
    message = str(refused.value)
    assert "refused the return path Bounces+d" in message
    assert "Sender address rejected" in message  # what the relay said
    assert "such as Postfix, or leave [bounces] address empty" in message
    with engine.connect() as connection:
        statuses = connection.execute(select(DELIVERIES.c.status)).scalars().all()
    assert statuses == ["queued"] * len(readers)
    _id, status, reply = mail_ids(engine)[readers[0]]
    assert status == "queued" and "refused the return path Bounces+t" in reply
    assert "leave [bounces] address empty" in reply
