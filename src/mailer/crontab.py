"""Cron schedules: a crontab line's five fields read as crontab reads them, and when such a
schedule was last due. Below everything that schedules: settings validates
`[schedule] digest_cron` with it, and the digest and the service compute their times."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from apscheduler.triggers.cron import CronTrigger

_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FULL_DAYS = {
    day[:3]: day
    for day in ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
}


def crontab_trigger(expression: str, timezone: str) -> CronTrigger:
    """A crontab line's five fields as an APScheduler trigger. The weekday is crontab's
    (0 or 7 = Sunday, 1 = Monday), which APScheduler 3 numbers from Monday = 0: numbers
    are turned into day names first, so "0 8 * * 1" is Monday 08:00 as in cron."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"expected 5 fields, got {len(fields)}")
    if fields[2] != "*" and fields[4] != "*":
        # cron runs on either; APScheduler only when both match: neither is what was meant
        raise ValueError("set the day of the month or the weekday, not both")
    fields[4] = _weekday_names(fields[4])
    return CronTrigger.from_crontab(" ".join(fields), timezone=ZoneInfo(timezone))


def _weekday_names(field: str) -> str:
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.lower().split(","):
        match = re.fullmatch(r"(\*|\w+)(?:-(\w+))?(?:/(\d+))?", part)
        if match is None:
            raise ValueError(f"weekday {part!r}")
        if match[1] == "*":
            low, high = 0, 6
        else:  # crontab: "1/2" steps from Monday to the end of the week
            low = _day_number(match[1])
            high = _day_number(match[2]) if match[2] else 7 if match[3] else low
            if high < low:
                raise ValueError(f"weekday range {part!r} runs backwards; write it as a list")
        days.update(day % 7 for day in range(low, high + 1, int(match[3] or 1)))
    return ",".join(_DAYS[day] for day in sorted(days))


def _day_number(token: str) -> int:
    if token.isdigit() and int(token) <= 7:
        return int(token)
    if token[:3] in _DAYS and len(token) in (3, len(_FULL_DAYS.get(token[:3], ""))):
        return _DAYS.index(token[:3])
    raise ValueError(f"weekday {token!r}: 0-7 (0 and 7 are Sunday) or sun, mon, ...")


def last_due(expression: str, timezone: str, now: datetime, within: timedelta) -> datetime | None:
    """The latest time the schedule was due at, if that is no longer ago than `within`."""
    if not expression:
        return None
    trigger = crontab_trigger(expression, timezone)
    due, start = None, now - within
    while (fire := trigger.get_next_fire_time(None, start)) is not None and fire <= now:
        # the next second counted in UTC: in local time, a second past the repeated 02:30
        # of an autumn night is a second past the first one, and the loop never ends
        due, start = fire, fire.astimezone(UTC) + timedelta(seconds=1)
    return due
