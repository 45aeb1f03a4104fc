"""The service's event log: one line per event, `digest-sent week=2026-W49 issue=7
sent=120`, with times in the publication's zone, for journald, cron mail or a file."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

log = logging.getLogger("mailer.scheduler")

_log_zone = [ZoneInfo("UTC")]  # times in the log: the publication's zone once set


def event(name: str, level: int = logging.INFO, **fields: object) -> None:
    """One line per event: `digest-sent week=2026-W49 issue=7 sent=120`."""
    log.log(level, " ".join([name, *(f"{key}={_value(v)}" for key, v in fields.items())]))


def _value(value: object) -> str:
    if isinstance(value, datetime):
        return value.astimezone(_log_zone[0]).isoformat(timespec="seconds")
    text = str(value)
    if not text or any(c.isspace() or c in "\"'=" for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


def log_to_stdout(timezone: str) -> None:
    """One line per event, with the time in the publication's zone."""
    zone = _log_zone[0] = ZoneInfo(timezone)

    class Formatter(logging.Formatter):
        def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
            moment = datetime.fromtimestamp(record.created, zone)
            return moment.isoformat(timespec="seconds")

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    logging.getLogger("apscheduler").setLevel(logging.ERROR)  # its events are logged here
