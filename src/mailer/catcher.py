"""The local catcher: an SMTP server on 127.0.0.1 (aiosmtpd) that stores every message it
receives in a Maildir and delivers nothing, so every command can be tried safely."""

from __future__ import annotations

import mailbox
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from mailer.errors import MailerError


class MaildirHandler:
    """Stores each message as received, byte for byte, with the envelope recipients
    recorded the way a delivering MTA does (Return-Path, Delivered-To)."""

    def __init__(self, maildir: Path, on_message: Callable[[list[str], bytes], None] | None = None):
        maildir.parent.mkdir(parents=True, exist_ok=True)
        self.maildir = mailbox.Maildir(maildir, create=True)
        self.on_message = on_message

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        for recipient in envelope.rcpt_tos:
            trace = f"Return-Path: <{envelope.mail_from}>\r\nDelivered-To: {recipient}\r\n"
            self.maildir.add(trace.encode() + content)
        if self.on_message is not None:
            self.on_message(list(envelope.rcpt_tos), content)
        return "250 2.0.0 Message stored"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def start_catcher(
    maildir: Path,
    host: str = "127.0.0.1",
    port: int = 1025,
    on_message: Callable[[list[str], bytes], None] | None = None,
) -> Controller:
    """Start the catcher in a background thread; stop it with .stop()."""
    controller = Controller(MaildirHandler(maildir, on_message), hostname=host, port=port)
    try:
        controller.start()
    except (OSError, RuntimeError) as exc:
        raise MailerError(
            f"cannot listen on {host}:{port} ({exc}); is another catcher already running? "
            "Use --port to pick another port"
        ) from None
    return controller
