"""An editor's second factor at the desk: TOTP (RFC 6238, pyotp), the six-digit code an
authenticator app shows. The secret is kept from setup on (`editor.totp_secret`); it is
asked for at sign-in only once the editor has typed a code that proves their app holds
it (`editor.totp_enabled`).

A code is taken once: the last time step accepted for each editor is kept in memory, in
the process that serves the desk (`mailer serve` runs one), so a code seen over a
shoulder or replayed is refused for the rest of its window. A restart forgets it, which
gives a replay at most the minute and a half a code is valid in anyway."""

from __future__ import annotations

import hmac
import threading
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno
from sqlalchemy import Engine
from sqlmodel import Session

from mailer.errors import EditorError
from mailer.models import Editor

# A code is taken from the step before and the one after too: a phone's clock that is
# half a minute off, or a code typed as it changed.
DRIFT_STEPS = 1


@dataclass(frozen=True)
class TotpSetup:
    """What an editor copies into their app: the secret as text, the otpauth:// URI it
    also reads, and that URI as a QR code (inline SVG)."""

    secret: str
    uri: str
    qr_svg: str


class UsedSteps:
    """The last time step accepted per editor, so no code is taken twice."""

    def __init__(self) -> None:
        self.last: dict[int, int] = {}
        self.lock = threading.Lock()

    def accept(self, editor_id: int, secret: str, code: str, now: datetime) -> bool:
        """The code is right for now (within the drift) and newer than the last one
        taken; it is taken, and it and every code before it are spent."""
        code = "".join(code.split())
        if not (code.isascii() and code.isdigit() and len(code) == 6):
            return False
        totp = pyotp.TOTP(secret)
        step = totp.timecode(now)
        found = [
            s
            for s in range(step - DRIFT_STEPS, step + DRIFT_STEPS + 1)
            if hmac.compare_digest(totp.generate_otp(s), code)
        ]
        with self.lock:
            if not found or found[-1] <= self.last.get(editor_id, -1):
                return False
            self.last[editor_id] = found[-1]
            return True


def setup(engine: Engine, editor_id: int, issuer: str) -> TotpSetup:
    """The editor's secret to copy into their app: the one kept since setup began (so a
    reload shows the same), or a new one."""
    with Session(engine) as session:
        editor = _editor(session, editor_id)
        if not editor.totp_secret:
            editor.totp_secret = pyotp.random_base32()
            session.add(editor)
            session.commit()
        secret, email = editor.totp_secret or "", editor.email
    uri = pyotp.TOTP(secret).provisioning_uri(name=email, issuer_name=issuer)
    return TotpSetup(secret, uri, qr_svg(uri))


def turn_on(engine: Engine, editor_id: int, code: str, used: UsedSteps, now: datetime) -> bool:
    """Asked at every sign-in from now on, if the code proves the app holds the secret."""
    with Session(engine) as session:
        editor = _editor(session, editor_id)
        if not editor.totp_secret or not used.accept(editor_id, editor.totp_secret, code, now):
            return False
        editor.totp_enabled = True
        session.add(editor)
        session.commit()
    return True


def turn_off(engine: Engine, editor_id: int, code: str, used: UsedSteps, now: datetime) -> bool:
    """No longer asked (and the secret forgotten), if the code is a current one."""
    with Session(engine) as session:
        editor = _editor(session, editor_id)
        if not editor.totp_enabled or not code_matches(editor, code, used, now):
            return False
        editor.totp_enabled, editor.totp_secret = False, None
        session.add(editor)
        session.commit()
    return True


def check(engine: Engine, editor_id: int, code: str, used: UsedSteps, now: datetime) -> bool:
    """The sign-in's second step: a current code, not taken before."""
    with Session(engine) as session:
        editor = session.get(Editor, editor_id)
        return editor is not None and code_matches(editor, code, used, now)


def code_matches(editor: Editor, code: str, used: UsedSteps, now: datetime) -> bool:
    if not (editor.totp_enabled and editor.totp_secret and editor.id is not None):
        return False
    return used.accept(editor.id, editor.totp_secret, code, now)


def qr_svg(uri: str) -> str:
    """The URI as a QR code: one SVG path, drawn in the page (no image request), named
    for a screen reader (the key and the link beside it are its text equivalents)."""
    svg: str = segno.make(uri, error="m").svg_inline(
        scale=4, border=2, omitsize=True, title="QR code of the key, for an authenticator app"
    )
    return svg.replace("<svg ", '<svg role="img" ', 1)


def _editor(session: Session, editor_id: int) -> Editor:
    editor = session.get(Editor, editor_id)
    if editor is None:
        raise EditorError("that account no longer exists")
    return editor
