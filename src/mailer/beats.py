"""The beat of mailer's long-running parts (the scheduler, the desk's sender): each
writes when it last went round its work, so the desk can tell one that has stopped
without asking it. A row per part; the newest beat wins whatever process wrote it."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

from sqlalchemy import Engine
from sqlmodel import Session, select

from mailer.models import ServiceBeat, utcnow

SCHEDULER = "scheduler"
DESK_SENDER = "desk-sender"


def beat(engine: Engine, name: str, started_at: datetime, now: datetime | None = None) -> None:
    """Say that `name`, running since `started_at`, is alive now."""
    with Session(engine) as session:
        row = session.get(ServiceBeat, name) or ServiceBeat(name=name)
        row.host, row.pid = socket.gethostname(), os.getpid()
        row.started_at, row.beat_at = started_at, now or utcnow()
        session.add(row)
        session.commit()


def last_beat(engine: Engine, name: str) -> ServiceBeat | None:
    with Session(engine) as session:
        return session.exec(select(ServiceBeat).where(ServiceBeat.name == name)).first()


def is_stopped(found: ServiceBeat | None, now: datetime, after: timedelta) -> bool:
    """Has the part not beaten for `after` (or never)?"""
    return found is None or now - found.beat_at > after
