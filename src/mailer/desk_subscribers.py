"""What an admin does to the subscriber list at the desk, as use cases: add one reader,
import a CSV upload, export a search, unsubscribe, purge or reactivate (after a bounce)
one reader. Each goes through the code `mailer subscribers` runs (subscribers.py,
subscriber_csv.py), with the same rules and messages, and each is written to the audit
log by the reader's number, never their address."""

from __future__ import annotations

import io
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from mailer.editors import record
from mailer.errors import SubscriberError
from mailer.models import AuditAction, Subscriber, SubscriberStatus
from mailer.reader_languages import checked_languages
from mailer.roster import Search, matching_subscribers, subscriber_by_id
from mailer.settings import Settings
from mailer.subscriber_csv import ImportReport, import_csv, write_csv
from mailer.subscribers import (
    add_subscriber,
    checked_request,
    reactivate,
    remove_subscriber,
    renew_request,
    unsubscribe,
)
from mailer.transactional import queue_confirmation


def _subject(subscriber_id: int | None) -> str:
    return f"subscriber {subscriber_id}"


@dataclass(frozen=True)
class Added:
    subscriber: Subscriber
    confirmation_queued: bool  # False: added as active, they had already agreed


def add_reader(
    engine: Engine,
    settings: Settings,
    editor_id: int,
    email: str,
    name: str | None,
    frequency: str,
    *,
    confirmed: bool,
    languages: str = "",
) -> Added:
    """One reader added as `mailer subscribers add` adds them: active when they have
    already agreed (`confirmed`), else pending, and then (unlike the command, which
    leaves that to the reader) sent a confirmation link through the transactional queue.
    SubscriberError says what is wrong (an address that is not one, on the list already,
    erased at the reader's request, a language the publication does not publish in).
    `languages`: those they read, their own first ("fa-AF,en"; empty: the publication's)."""
    address, name, frequency = checked_request(email, name, frequency)
    read = checked_languages(languages, settings.publication.languages)
    subscriber = add_subscriber(
        engine, address, name, confirmed=confirmed, frequency=frequency,
        purge_key=settings.purge_key, languages=read,
    )  # fmt: skip
    assert subscriber.id is not None
    queued = False
    if not confirmed and renew_request(engine, subscriber.id) is not None:
        queued = queue_confirmation(engine, subscriber.id)
    how = "added as active" if confirmed else "added as pending, confirmation link sent"
    record(engine, editor_id, AuditAction.SUBSCRIBER_ADDED, _subject(subscriber.id), how)
    return Added(subscriber, queued)


# What an uploaded file is saved as while it is read (the CSV reader takes a path).
_SAFE_NAME = re.compile(r"[^\w.\- ]+")


def import_upload(
    engine: Engine, settings: Settings, editor_id: int, filename: str, data: bytes
) -> ImportReport:
    """An uploaded CSV imported as `mailer subscribers import` imports a file: every good
    row added, each bad row in the report with its line and reason. A file refused whole
    (not UTF-8, no email column) raises SubscriberError naming the upload, and changes
    nothing."""
    shown = _SAFE_NAME.sub("_", Path(filename).name)[:100] or "upload.csv"
    with tempfile.TemporaryDirectory(prefix="mailer-import-") as folder:
        path = Path(folder) / shown
        path.write_bytes(data)
        try:
            report = import_csv(
                engine, path, purge_key=settings.purge_key, languages=settings.publication.languages
            )
        except SubscriberError as exc:
            raise SubscriberError(str(exc).replace(str(path), shown)) from None
    detail = (
        f"imported {report.added}, skipped {len(report.skipped)}, rejected {len(report.rejected)}"
    )
    record(engine, editor_id, AuditAction.SUBSCRIBERS_IMPORTED, "subscribers", detail)
    return report


def export_search(engine: Engine, editor_id: int, search: Search) -> str:
    """The readers `search` finds (every page), as `mailer subscribers export` writes
    them: its columns, erased readers left out, formula-like cells neutralised. The audit
    log says how many and which filters, not the text searched for (it may be an
    address)."""
    out = io.StringIO()
    count = write_csv(out, matching_subscribers(engine, search))
    filters = [f"status {search.status}"] if search.status else []
    filters += [f"frequency {search.frequency}"] if search.frequency else []
    filters += ["a search"] if search.text.strip() else []
    detail = f"{count} rows" + (f" ({', '.join(filters)})" if filters else "")
    record(engine, editor_id, AuditAction.SUBSCRIBERS_EXPORTED, "subscribers", detail)
    return out.getvalue()


def unsubscribe_reader(engine: Engine, editor_id: int, subscriber_id: int) -> Subscriber | None:
    """The reader unsubscribed as their own link would (the first time is the one kept);
    None when there is no such reader."""
    found = subscriber_by_id(engine, subscriber_id)
    if found is None:
        return None
    if found.status == SubscriberStatus.UNSUBSCRIBED:
        return found
    left = unsubscribe(engine, subscriber_id)
    record(engine, editor_id, AuditAction.SUBSCRIBER_UNSUBSCRIBED, _subject(subscriber_id))
    return left


def is_erased(subscriber: Subscriber) -> bool:
    return subscriber.email.startswith("erased:")


def purge_reader(
    engine: Engine, settings: Settings, editor_id: int, subscriber_id: int
) -> Subscriber | None:
    """The reader erased as `mailer subscribers remove --purge` erases them: unsubscribed,
    their address kept only as the keyed marker that stops it coming back by mistake,
    their name and consent address gone, their queued mail deleted, the relay's replies
    to their deliveries cut to the codes; the deliveries stay (the issues' counts). None
    when there is no such reader; an erased reader is left as they are."""
    found = subscriber_by_id(engine, subscriber_id)
    if found is None or is_erased(found):
        return found
    erased = remove_subscriber(engine, found.email, purge=True, purge_key=settings.purge_key)
    record(engine, editor_id, AuditAction.SUBSCRIBER_PURGED, _subject(subscriber_id))
    return erased


def reactivate_reader(engine: Engine, editor_id: int, subscriber_id: int) -> Subscriber | None:
    """A bounced reader made active again as `mailer subscribers reactivate` does it:
    their past failures forgiven, their bounce score from nothing. None when there is no
    such reader; SubscriberError when they are not bounced (a reader who left or
    complained comes back only by subscribing)."""
    found = subscriber_by_id(engine, subscriber_id)
    if found is None:
        return None
    if is_erased(found) or found.status != SubscriberStatus.BOUNCED:
        raise SubscriberError(
            f"they are {found.status}, not bounced: only a bounced reader is reactivated "
            "(a reader who left subscribes again on the site)"
        )
    active = reactivate(engine, found.email)
    record(engine, editor_id, AuditAction.SUBSCRIBER_REACTIVATED, _subject(subscriber_id))
    return active
