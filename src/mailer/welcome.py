"""The welcome series (issue 16): the mail a reader gets once they confirm their
subscription themselves, and the follow-ups `[welcome] follow_ups` adds by day after it.

Each is a transactional mail (transactional.py sends it, with its retries): the welcome
is queued in the transaction that confirms the reader (`queue_welcome`, handed to
subscribers.confirm_subscription), never from the web request's own work, and at most
once per reader whatever happens later (a second confirmation after leaving and coming
back brings none). A scheduler job queues the follow-ups that have come due
(`queue_follow_ups`), one per reader at a time (the outbox keeps one waiting mail per
reader and kind), and only to readers whose welcome went out; a reader who leaves gets
none of the rest, checked when a follow-up is queued and again when it is sent.

Every mail of the series carries the appeal with one reference of its own
(references.welcome_reference), so a gift marked with it is the welcome's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from sqlalchemy import ColumnElement, Connection, Engine, Exists, Select, func, select
from sqlalchemy.exc import IntegrityError

from mailer.donation import DonationBlock
from mailer.errors import ConfigError
from mailer.i18n import own_language
from mailer.links import issue_url
from mailer.messages import MessageBuilder, OutgoingMessage, Recipient
from mailer.models import (
    ISSUES,
    SUBSCRIBERS,
    TRANSACTIONAL_MAILS,
    IssueStatus,
    MailKind,
    MailStatus,
    SubscriberStatus,
    queued_mail,
    utcnow,
)
from mailer.references import welcome_reference
from mailer.render import (
    InlineImage,
    RenderedIssue,
    email_context,
    one_line,
    render_pair,
    template_dirs,
    translator,
)
from mailer.sections_readers import FollowUp
from mailer.settings import Settings

MAILS = TRANSACTIONAL_MAILS
KINDS = (MailKind.WELCOME, MailKind.FOLLOW_UP)
FOLLOW_UP_TEMPLATES = "email/welcome"  # <template>.html and .txt, one pair per follow-up


def N_(message: str) -> str:
    """Marks a message for the catalogs; it is translated where it is used."""
    return message


# What each frequency (subscribers.FREQUENCIES) brings, in the reader's words.
RECEIVES = {
    "every": N_(
        "every article as soon as we publish it, and a digest of the week's articles once a week"
    ),
    "articles": N_("every article as soon as we publish it, without the weekly digest"),
    "weekly": N_("one digest a week of the articles we published that week"),
}
# The follow-ups' subjects config/mailer.toml suggests: [welcome] follow_ups' subjects
# are looked up in the catalogs too, so a newsroom's own locale/ can translate its own.
SUGGESTED_SUBJECTS = (N_("Who we are"), N_("How we are funded"))

Build = Callable[[], OutgoingMessage]


# --- queueing ---------------------------------------------------------------------


def queue_welcome(connection: Connection, subscriber_id: int, now: datetime) -> bool:
    """Queue the reader's welcome in the confirmation's transaction, unless they had one
    already (sent, failed or waiting: a reader is welcomed once); whether it was queued.
    The confirmation holds the reader's row, so two at once cannot both get here."""
    had = connection.execute(
        select(MAILS.c.id)
        .where(MAILS.c.subscriber_id == subscriber_id, MAILS.c.kind == MailKind.WELCOME)
        .limit(1)
    ).first()
    if had is not None:
        return False
    connection.execute(queued_mail(MailKind.WELCOME, now, subscriber_id=subscriber_id))
    return True


def on_confirmed(settings: Settings) -> Callable[[Connection, int, datetime], bool] | None:
    """What a reader's own confirmation does besides: queue the welcome, unless
    `[welcome] enabled` is off."""
    return queue_welcome if settings.welcome.enabled else None


def queue_follow_ups(engine: Engine, settings: Settings, now: datetime) -> int:
    """Queue each follow-up that has come due, in the order of their days: to every
    active reader whose welcome was sent, who confirmed `day` days ago or more, has not
    had this one, and has no follow-up waiting (the next one waits for the next run).
    How many were queued; safe to run from several services at once."""
    welcome = settings.welcome
    if not welcome.enabled:
        return 0
    queued = 0
    for step in welcome.follow_ups:
        with engine.connect() as connection:
            due = list(connection.execute(_due(step, now)).scalars())
        for subscriber_id in due:
            try:
                with engine.begin() as connection:
                    _queue_follow_up(connection, subscriber_id, step, now)
            except (IntegrityError, _Overtaken):  # another follow-up waits, or this one went
                continue
            queued += 1
    return queued


class _Overtaken(Exception):
    """Another service queued (and sent) this follow-up since it was found due."""


def _queue_follow_up(
    connection: Connection, subscriber_id: int, step: FollowUp, now: datetime
) -> None:
    """The write first, then the look: a mail of this step that another service queued
    meanwhile, sent or not, is seen, and this one rolled back."""
    connection.execute(
        queued_mail(MailKind.FOLLOW_UP, now, subscriber_id=subscriber_id, step=step.template)
    )
    same = connection.execute(
        select(func.count()).where(
            MAILS.c.subscriber_id == subscriber_id,
            MAILS.c.kind == MailKind.FOLLOW_UP,
            MAILS.c.step == step.template,
        )
    ).scalar_one()
    if same > 1:
        raise _Overtaken


def _due(step: FollowUp, now: datetime) -> Select[int]:
    s, m = SUBSCRIBERS.c, MAILS.c

    def any_mail(*where: ColumnElement[bool]) -> Exists:
        return select(m.id).where(m.subscriber_id == s.id, *where).exists()

    return (
        select(s.id)
        .where(
            s.status == SubscriberStatus.ACTIVE,
            ~s.email.startswith("erased:"),
            s.confirmed_at <= now - timedelta(days=step.day),
            any_mail(m.kind == MailKind.WELCOME, m.status == MailStatus.SENT),
            ~any_mail(m.kind == MailKind.FOLLOW_UP, m.step == step.template),
            ~any_mail(
                m.kind == MailKind.FOLLOW_UP, m.status.in_((MailStatus.QUEUED, MailStatus.SENDING))
            ),
        )
        .order_by(s.id)
    )


# --- sending ----------------------------------------------------------------------


def welcome_mail(
    engine: Engine,
    settings: Settings,
    recipient: Recipient,
    status: str,
    kind: str,
    step: str | None,
) -> Build | str:
    """How to make the welcome (or the follow-up `step`) for this reader, or why there is
    none to send: they left, bounced or were erased since, the series is off, or the
    follow-up is no longer configured."""
    if status != SubscriberStatus.ACTIVE or recipient.email.startswith("erased:"):
        return f"no welcome mail due (reader {status})"
    if not settings.welcome.enabled:
        return "welcome mails are off ([welcome] enabled)"
    follow_up = None
    if kind == MailKind.FOLLOW_UP:
        follow_up = next((f for f in settings.welcome.follow_ups if f.template == step), None)
        if follow_up is None:
            return f"follow-up {step!r} is no longer in [welcome] follow_ups"
    with engine.connect() as connection:
        s = SUBSCRIBERS.c
        frequency, confirmed_at, languages = connection.execute(
            select(s.frequency, s.confirmed_at, s.languages).where(s.id == recipient.subscriber_id)
        ).one()
        latest = connection.execute(
            select(ISSUES.c.key, ISSUES.c.subject)
            .where(ISSUES.c.status == IssueStatus.SENT)
            .order_by(ISSUES.c.sent_at.desc(), ISSUES.c.id.desc())
            .limit(1)
        ).first()
    publication = settings.publication
    language = own_language(languages, publication.language)
    reader = Reader(recipient.name, frequency, confirmed_at, language)
    own = None if language == publication.language else language
    issue = (issue_url(publication.base_url, latest[0], own), latest[1]) if latest else None
    return partial(_message, settings, recipient, reader, issue, follow_up)


@dataclass(frozen=True)
class Reader:
    """What the welcome says to a reader: their name, what they receive, since when."""

    name: str | None
    frequency: str
    confirmed_at: datetime | None
    language: str | None = None  # the one they read first (None: the publication's)


def _message(
    settings: Settings,
    recipient: Recipient,
    reader: Reader,
    latest: tuple[str, str] | None,
    follow_up: FollowUp | None,
) -> OutgoingMessage:
    rendered = render_welcome(settings, reader, latest, follow_up)
    return MessageBuilder(settings, rendered).build(recipient)


def render_welcome(
    settings: Settings,
    reader: Reader,
    latest: tuple[str, str] | None = None,
    follow_up: FollowUp | None = None,
) -> RenderedIssue:
    """The welcome (or a follow-up) in the newsletter's look: the greeting, what the
    reader will receive and how often, the latest issue online (`latest`: its address
    and subject), the appeal with the welcome's reference and its QR codes, and a
    subscriber's footer (their preferences and unsubscribe links, filled in by the
    message builder). All of it in the reader's language, the appeal too."""
    language = reader.language or settings.publication.language
    t = translator(settings, language)
    name = one_line(settings.publication.name)
    if follow_up:
        subject = t.gettext(one_line(follow_up.subject))
    else:
        subject = t.gettext("Welcome to %(name)s") % {"name": name}
    preheader = t.gettext("What you will get from us, how often, and how we are funded.")
    year = (reader.confirmed_at or utcnow()).year
    reference = welcome_reference(settings.donation.reference_prefix, year)
    context = {
        **email_context(settings, subject, preheader, reference=reference, language=language),
        "name": reader.name and one_line(reader.name),
        "receives": t.gettext(RECEIVES.get(reader.frequency, RECEIVES["every"])),
        "latest": {"url": latest[0], "subject": latest[1]} if latest else None,
    }
    template = f"{FOLLOW_UP_TEMPLATES}/{follow_up.template}" if follow_up else "email/welcome"
    html, text = render_pair(settings, template, context, language)
    block = context["donation"]
    codes = block.codes if isinstance(block, DonationBlock) else ()
    images = tuple(InlineImage(code.name, code.cid, code.png) for code in codes)
    return RenderedIssue(subject, preheader, html, text, reference, images)


# --- at start ---------------------------------------------------------------------


def check_follow_up_templates(settings: Settings) -> None:
    """Stop at start (ConfigError) when a configured follow-up has no templates, rather
    than at its day, with the key and where they were looked for."""
    dirs = template_dirs(settings)
    for step in settings.welcome.follow_ups:
        for suffix in ("html", "txt"):
            name = f"{FOLLOW_UP_TEMPLATES}/{step.template}.{suffix}"
            if not any((folder / name).is_file() for folder in dirs):
                looked = ", ".join(str(folder) for folder in dirs)
                raise ConfigError(
                    f"invalid configuration in {settings.config_path or 'settings'}:\n"
                    f"  welcome.follow_ups: the follow-up {step.template!r} (day {step.day}) "
                    f"has no template {name} (looked in {looked}); add it, or remove the "
                    "follow-up"
                )
