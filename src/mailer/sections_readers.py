"""The sections of config/mailer.toml about what follows a message and a sign-up:
`[bounces]` (the return path, the bounce mailbox and what a bounce costs a reader) and
`[welcome]` (the welcome mail and the series after it)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from mailer.sections import Section, _address


class Bounces(Section):
    """Bounces and complaints that come back after the relay took a message."""

    # The return path: with it set, each message's envelope sender is
    # bounces+<token>@domain (VERP), the token naming the delivery; empty: from_address.
    address: str = ""
    # The mailbox bounces arrive in, read by `mailer bounces fetch` and the scheduler.
    imap_host: str = ""
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_security: Literal["tls", "starttls"] = "tls"
    imap_user: str = ""
    # Only ever from MAILER_BOUNCES_IMAP_PASSWORD; the loader refuses it in the file.
    imap_password: str = Field(default="", repr=False)
    imap_folder: str = "INBOX"
    # where a message goes once processed (created if missing)
    imap_processed_folder: str = "Processed"
    poll_minutes: float = Field(default=15, gt=0)
    # soft bounces (mailbox full, deferred, too big, blocked) count a point a day at most;
    # a reader is bounced at soft_limit points, and the score lapses score_days after its
    # last point (30: a weekly reader who bounces every week reaches 5 in a month)
    soft_limit: int = Field(default=5, ge=1)
    score_days: int = Field(default=30, ge=1)

    @field_validator("address")
    @classmethod
    def _return_path(cls, value: str) -> str:
        if not value:
            return value
        checked = _address(value)
        local = checked.rpartition("@")[0]
        if "+" in local:
            raise ValueError("an address without '+' (mailer adds +<token> to it)")
        if len(local) > 64 - 41:
            raise ValueError("a local part of at most 23 characters (+<token> takes 41 of 64)")
        return checked

    @model_validator(mode="after")
    def _mailbox(self) -> Bounces:
        if self.imap_host and not self.imap_user:
            raise ValueError("bounces.imap_user: needed with bounces.imap_host")
        return self


_STEP_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,39}")


class FollowUp(Section):
    """A later mail of the welcome series: templates/email/welcome/<template>.html|txt,
    sent `day` days after the reader confirmed."""

    day: int = Field(ge=1, le=365)
    template: str
    subject: str = Field(min_length=1)

    @field_validator("template")
    @classmethod
    def _name(cls, value: str) -> str:
        if _STEP_NAME.fullmatch(value) is None:
            raise ValueError("a template name of lower-case letters, digits and '-'")
        return value


class Welcome(Section):
    """The welcome mail a reader gets on confirming, and the follow-ups after it."""

    enabled: bool = True
    follow_ups: tuple[FollowUp, ...] = ()

    @field_validator("follow_ups")
    @classmethod
    def _distinct(cls, steps: tuple[FollowUp, ...]) -> tuple[FollowUp, ...]:
        names = [step.template for step in steps]
        if len(set(names)) != len(names):
            raise ValueError("follow-ups with different templates (each is sent once)")
        return tuple(sorted(steps, key=lambda step: step.day))
