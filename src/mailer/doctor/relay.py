"""The relay, as `mailer doctor` sees it: connect to [smtp] host:port in the configured
security mode, as the sender does (smtp.py), and see that the connection is or can be
made private (STARTTLS, or TLS from the start) with a certificate the sender will trust."""

from __future__ import annotations

import smtplib
import socket
import ssl

from mailer.doctor.findings import Finding, Topic, note, ok, problem, warning
from mailer.sections import Smtp

SECURITY_FIX = (
    'Use the relay\'s submission port: 587 with [smtp] security = "starttls", or 465 '
    'with security = "tls" (your provider\'s help pages name them).'
)


class _Probe(smtplib.SMTP):
    """An SMTP client that connects to an address already looked up (through the DNS
    doctor asks) while naming the host, so a certificate is checked against its name."""

    def __init__(self, host: str, port: int, via: str, wrap: ssl.SSLContext | None, timeout: float):
        self.via, self.wrap = via, wrap
        super().__init__(host, port, "localhost", timeout)

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        raw = socket.create_connection((self.via, port), timeout)
        if self.wrap is None:
            return raw
        return self.wrap.wrap_socket(raw, server_hostname=host)


def relay_check(smtp: Smtp, via: str, local: bool, tls: ssl.SSLContext) -> list[Finding]:
    """Connect to the relay at address `via`; `local`: it runs on this machine (or its
    network), where an unencrypted hop is the local Postfix's or the demo's business."""
    where = f"{smtp.host}:{smtp.port}"
    try:
        probe = _Probe(
            smtp.host, smtp.port, via, tls if smtp.security == "tls" else None, smtp.timeout
        )
    except ssl.SSLError as exc:
        return [_tls_failed(where, exc)]
    except (OSError, smtplib.SMTPException) as exc:
        says = f"cannot connect to the relay {where}: {exc}."
        return [problem(Topic.RELAY, says, "Check [smtp] host and port, and that it is running.")]
    try:
        return _greeted(probe, smtp, where, local, tls)
    except (OSError, smtplib.SMTPException) as exc:
        says = f"the relay {where} broke off the conversation: {exc}."
        return [problem(Topic.RELAY, says, "Check [smtp] host, port and security.")]
    finally:
        try:
            probe.quit()
        except (OSError, smtplib.SMTPException):
            probe.close()


def _greeted(
    probe: _Probe, smtp: Smtp, where: str, local: bool, tls: ssl.SSLContext
) -> list[Finding]:
    if smtp.security == "tls":
        return [
            ok(
                Topic.RELAY,
                f"the relay {where} speaks TLS from the start, with a valid certificate.",
            )
        ]
    probe.ehlo()
    if not probe.has_extn("starttls"):
        return [_no_starttls(smtp, where, local)]
    try:
        probe.starttls(context=tls)
    except ssl.SSLError as exc:
        return [_tls_failed(where, exc)]
    if smtp.security == "none":
        says = (
            f"the relay {where} offers STARTTLS, but [smtp] security = "
            '"none" leaves mail unencrypted.'
        )
        return [warning(Topic.RELAY, says, 'Set [smtp] security = "starttls".')]
    return [ok(Topic.RELAY, f"the relay {where} offers STARTTLS, with a valid certificate.")]


def _no_starttls(smtp: Smtp, where: str, local: bool) -> Finding:
    if smtp.security == "starttls":
        says = (
            f'the relay {where} offers no STARTTLS, but [smtp] security = "starttls": '
            "every send will fail."
        )
        return problem(Topic.RELAY, says, SECURITY_FIX)
    if local:
        says = (
            f"the relay {where} offers no STARTTLS; on this machine that is fine (the local "
            "Postfix or the demo), and the hop out is that server's to encrypt."
        )
        return note(Topic.RELAY, says)
    says = (
        f"the relay {where} offers no STARTTLS: mail and the password cross the network "
        "unencrypted, and many relays refuse to go on."
    )
    return problem(Topic.RELAY, says, SECURITY_FIX)


def _tls_failed(where: str, exc: ssl.SSLError) -> Finding:
    if isinstance(exc, ssl.SSLCertVerificationError):
        says = (
            f"the relay {where} shows a certificate that is not to be trusted "
            f"({exc.verify_message}): sending will fail the same way."
        )
    else:
        says = f"TLS with the relay {where} failed ({exc.reason or exc}): sending will too."
    fix = "Check [smtp] host is the name on the relay's certificate, and [smtp] port and security."
    return problem(Topic.RELAY, says, fix)
