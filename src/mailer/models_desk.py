"""The desk's tables: the editors who sign in, and the audit log of what they did (moved
out of models.py, which still exports them)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import cast

from sqlalchemy import Boolean, Table, Text, false
from sqlmodel import Column, Field, SQLModel

from mailer.columns import UTCDateTime, utcnow


class EditorRole(StrEnum):
    EDITOR = "editor"  # articles, issues, the digest, reports
    ADMIN = "admin"  # also subscribers' personal data, imports, purges and accounts


class Editor(SQLModel, table=True):
    """A person who signs in at the desk (/desk): its address normalised as subscribers'
    are, its password kept only as an argon2 hash."""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(sa_column=Column(Text, nullable=False, unique=True))
    role: str = EditorRole.EDITOR
    password_hash: str = Field(sa_column=Column(Text, nullable=False))
    # TOTP (RFC 6238): the secret is kept from setup on; it is asked at sign-in only
    # once the editor has proved their app holds it (totp_enabled)
    totp_secret: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    totp_enabled: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=false())
    )
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime()))


class AuditAction(StrEnum):
    EDITOR_ADDED = "editor-added"
    EDITOR_REMOVED = "editor-removed"
    PASSWORD_RESET = "password-reset"
    SIGNED_IN = "signed-in"
    SIGNED_OUT = "signed-out"
    # who signs in (issue 13, part A): the second factor
    TOTP_ENABLED = "totp-enabled"
    TOTP_DISABLED = "totp-disabled"
    # articles at the desk
    ARTICLE_ADDED = "article-added"
    ARTICLE_EDITED = "article-edited"
    # the desk's subscriber pages (admins)
    SUBSCRIBER_ADDED = "subscriber-added"
    SUBSCRIBERS_IMPORTED = "subscribers-imported"
    SUBSCRIBERS_EXPORTED = "subscribers-exported"
    SUBSCRIBER_UNSUBSCRIBED = "subscriber-unsubscribed"
    SUBSCRIBER_PURGED = "subscriber-purged"
    # sending from the desk (issue 13, part C)
    ISSUE_EDITED = "issue-edited"
    TEST_SENT = "test-sent"
    ISSUE_SENT = "issue-sent"
    ISSUE_SCHEDULED = "issue-scheduled"
    ISSUE_CANCELLED = "issue-cancelled"
    DIGEST_SENT = "digest-sent"
    # issue 15: donations (the desk's import of a bank statement, a Vipps report, a CSV)
    DONATIONS_IMPORTED = "donations-imported"
    # issue 16: an admin undoes a bounce at the desk
    SUBSCRIBER_REACTIVATED = "subscriber-reactivated"


class AuditEvent(SQLModel, table=True):
    """Who did what at the desk or with `mailer editors`, and when. `subject` names what
    it was done to ("issue 7", "subscriber 123", "editor 2"), never a reader's address."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), index=True))
    # no foreign key: the log outlives a removed editor; None when done from the command line
    editor_id: int | None = None
    action: str
    subject: str = ""
    detail: str = ""


EDITORS = cast(Table, Editor.__table__)  # type: ignore[attr-defined]
AUDIT_EVENTS = cast(Table, AuditEvent.__table__)  # type: ignore[attr-defined]
