"""The desk's accounts: editors and admins who sign in at /desk, their argon2 password
hashes, and the audit log of what they do. Used by `mailer editors` and the desk."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from mailer.errors import EditorError, SubscriberError
from mailer.models import AuditAction, AuditEvent, Editor, EditorRole
from mailer.password_links import ResetClaim, matches
from mailer.subscribers import normalise_address
from mailer.transactional import queue_password_mail

# Long enough that a guessed password is not worth guessing at the desk's rate limit;
# no rules about kinds of characters (a passphrase of plain words is fine).
MIN_PASSWORD = 12
MAX_PASSWORD = 1024  # argon2 takes any length; a form's body limit takes no more

HASHER = PasswordHasher()
# Checked against when the address is unknown, so a wrong address costs what a wrong
# password does and the answer's time says nothing about who has an account. Written
# out, not hashed at import (a fifth of every `mailer` command's start-up); hashed anew
# only if the library's parameters have changed, so it always costs what a real one does.
_DUMMY_HASH = (
    "$argon2id$v=19$m=65536,t=3,p=4$MxAzqJaB9oD72CZl3VV/fw"
    "$foAHgHV/SkJx4MbTnQFK9I2m0COtpnjRqlyq3sIB7WE"
)
if HASHER.check_needs_rehash(_DUMMY_HASH):
    _DUMMY_HASH = HASHER.hash("not anybody's password, only here to be checked against")


@dataclass(frozen=True)
class EditorView:
    """An editor as the front doors show it (never the hash)."""

    id: int
    email: str
    role: EditorRole
    totp_enabled: bool = False
    created_at: datetime | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == EditorRole.ADMIN


def _view(editor: Editor) -> EditorView:
    role = EditorRole(editor.role)
    return EditorView(editor.id or 0, editor.email, role, editor.totp_enabled, editor.created_at)


def editor_address(raw: str) -> str:
    try:
        return normalise_address(raw)
    except SubscriberError as exc:
        raise EditorError(str(exc)) from None


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise EditorError(
            f"the password is {len(password)} characters long; give at least {MIN_PASSWORD} "
            "(a few plain words make a good one)"
        )
    if len(password) > MAX_PASSWORD:
        raise EditorError(f"the password is over {MAX_PASSWORD} characters; give a shorter one")


def add_editor(
    engine: Engine,
    email: str,
    password: str | None,
    role: EditorRole = EditorRole.EDITOR,
    by: int | None = None,
) -> EditorView:
    """A new account. Without a password (added at the desk) it cannot sign in until
    its editor sets one with the link that is mailed to them (`invite`); `by` is the
    admin who added it (None: the command line)."""
    address = editor_address(email)
    if password is not None:
        check_password(password)
    # nobody knows a random password: the account waits for its link
    editor = Editor(
        email=address,
        role=role,
        password_hash=HASHER.hash(password or secrets.token_urlsafe(32)),
    )
    with Session(engine) as session:
        session.add(editor)
        try:
            session.commit()
        except IntegrityError:
            raise EditorError(
                f"{address} already has an account; `mailer editors reset {address}` "
                "gives it a new password"
            ) from None
        session.refresh(editor)
        view = _view(editor)
    record(engine, by, AuditAction.EDITOR_ADDED, f"editor {view.id}", f"role {role}")
    return view


def invite(engine: Engine, editor_id: int) -> None:
    """Mail the editor a link to set their password (valid an hour, once)."""
    queue_password_mail(engine, editor_id=editor_id)


def list_editors(engine: Engine) -> list[EditorView]:
    with Session(engine) as session:
        return [_view(e) for e in session.exec(select(Editor).order_by(col(Editor.email)))]


def _stored(session: Session, email: str) -> Editor:
    address = editor_address(email)
    editor = session.exec(select(Editor).where(Editor.email == address)).first()
    if editor is None:
        raise EditorError(f"no editor has the address {address}; `mailer editors list` shows them")
    return editor


def remove_editor(engine: Engine, email: str) -> EditorView:
    """Delete the account; its sessions stop working at their next request."""
    with Session(engine) as session:
        editor = _stored(session, email)
        view = _view(editor)
        session.delete(editor)
        session.commit()
    record(engine, None, AuditAction.EDITOR_REMOVED, f"editor {view.id}")
    return view


def remove_editor_by(engine: Engine, editor_id: int, by: int) -> EditorView:
    """An admin at the desk removes another account (never their own: the desk would
    have no way back in for them)."""
    if editor_id == by:
        raise EditorError("you cannot remove your own account; another admin can")
    with Session(engine) as session:
        editor = session.get(Editor, editor_id)
        if editor is None:
            raise EditorError("that account does not exist (any more)")
        view = _view(editor)
        session.delete(editor)
        session.commit()
    record(engine, by, AuditAction.EDITOR_REMOVED, f"editor {view.id}")
    return view


def reset_password(engine: Engine, email: str, password: str) -> EditorView:
    """A new password, and the second factor off (an admin's way back in for an editor
    who lost their phone); sessions signed in with the old password stop working."""
    check_password(password)
    with Session(engine) as session:
        editor = _stored(session, email)
        editor.password_hash = HASHER.hash(password)
        editor.totp_enabled, editor.totp_secret = False, None
        session.add(editor)
        session.commit()
        view = _view(editor)
    record(engine, None, AuditAction.PASSWORD_RESET, f"editor {view.id}", "second factor off")
    return view


def ask_for_password_link(engine: Engine, email: str) -> None:
    """ "Forgot password": a link is queued for the address; the sender finds out whether
    an account has it, so asking costs the same whoever asks (and an unknown address
    leaves nothing behind)."""
    try:
        address = editor_address(email)
    except EditorError:
        return
    queue_password_mail(engine, email=address)


def password_link_editor(engine: Engine, claim: ResetClaim) -> EditorView | None:
    """The editor a reset link is for, if it is still unused (their password unchanged)."""
    with Session(engine) as session:
        editor = session.get(Editor, claim.editor_id)
        if editor is None or not matches(claim, editor.password_hash):
            return None
        return _view(editor)


def set_password_from_link(engine: Engine, claim: ResetClaim, password: str) -> EditorView:
    """The new password a reset link's form gives; the link is spent (the hash it was
    made against is gone) and every session of the account ends. The second factor
    stays as it is: a mailbox alone does not get past it."""
    check_password(password)
    with Session(engine) as session:
        editor = session.get(Editor, claim.editor_id)
        if editor is None or not matches(claim, editor.password_hash):
            raise EditorError("this link has been used already; ask for a new one")
        editor.password_hash = HASHER.hash(password)
        session.add(editor)
        session.commit()
        view = _view(editor)
    record(engine, view.id, AuditAction.PASSWORD_RESET, f"editor {view.id}", "from a link")
    return view


def authenticate(engine: Engine, email: str, password: str) -> EditorView | None:
    """The editor with this address and password, else None, in about the same time
    whatever was wrong (an unknown address is checked against a dummy hash)."""
    try:
        address = editor_address(email)
    except EditorError:
        address = ""
    with Session(engine) as session:
        editor = (
            session.exec(select(Editor).where(Editor.email == address)).first() if address else None
        )
        try:
            HASHER.verify(editor.password_hash if editor else _DUMMY_HASH, password[:MAX_PASSWORD])
        except (VerificationError, InvalidHashError):
            return None
        if editor is None:
            return None
        if HASHER.check_needs_rehash(editor.password_hash):
            editor.password_hash = HASHER.hash(password)
            session.add(editor)
            session.commit()
        return _view(editor)


def session_stamp(engine: Engine, editor_id: int) -> tuple[EditorView, str] | None:
    """The editor with this id, and a stamp of their password hash (a session made
    before a password reset carries an old stamp), or None if the account is gone."""
    with Session(engine) as session:
        editor = session.get(Editor, editor_id)
        if editor is None:
            return None
        return _view(editor), editor.password_hash[-16:]


def record(
    engine: Engine, editor_id: int | None, action: AuditAction, subject: str = "", detail: str = ""
) -> None:
    """One line of the audit log. `subject` names a thing by its number ("issue 7",
    "subscriber 123"), never a reader's address."""
    with Session(engine) as session:
        session.add(AuditEvent(editor_id=editor_id, action=action, subject=subject, detail=detail))
        session.commit()


def audit_log(
    engine: Engine, limit: int = 100, offset: int = 0, action: str | None = None
) -> list[AuditEvent]:
    """The log newest first, `limit` entries after the first `offset`, of one action or
    all."""
    query = select(AuditEvent)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    with Session(engine) as session:
        query = query.order_by(col(AuditEvent.id).desc()).offset(offset).limit(limit)
        return list(session.exec(query).all())
