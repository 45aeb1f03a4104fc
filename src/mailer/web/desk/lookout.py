"""The desk's lookout: a thread of `mailer serve` that keeps, in memory, what needs a
person (held sends, a silent scheduler: a few small queries every REFRESH_SECONDS) and
whether the relay answers (a connect, EHLO and QUIT every RELAY_SECONDS; sooner while it
fails, so the banner goes soon after the relay is back). Every desk page shows its
banner from this memory, so no page waits on the database or the relay for it. It also
keeps the dashboard's readers by week, counted afresh every CHART_SECONDS: three scans
of the subscribers (no index on their dates) take 150 ms at 100,000 readers on SQLite,
too long to add to a page, and a weekly chart a few minutes old says the same."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

from mailer.desk_overview import Attention, ReaderWeek, attention, readers_over_time, relay_problem
from mailer.events import log
from mailer.models import utcnow
from mailer.settings import Settings

REFRESH_SECONDS = 3.0
RELAY_SECONDS = 60.0
RELAY_FAILING_SECONDS = 10.0
CHART_SECONDS = 300.0


class Lookout:
    def __init__(self, engine: Engine, settings: Settings, desk_sends: Callable[[], bool]):
        self.engine, self.settings, self.desk_sends = engine, settings, desk_sends
        self.current = Attention(held=[])  # nothing known yet: no banner
        self.relay = ""  # the last check's problem, "" when it answered
        self.relay_checked = float("-inf")  # monotonic time of the last check
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.relay_thread: threading.Thread | None = None
        self.counted: tuple[float, list[ReaderWeek]] | None = None  # (monotonic time, weeks)

    def start(self) -> None:
        self.stopping.clear()
        self.thread = threading.Thread(target=self._run, name="desk-lookout", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        for thread in (self.thread, self.relay_thread):
            if thread is not None:
                thread.join(timeout)

    def refresh(self) -> None:
        found = attention(self.engine, self.settings, utcnow(), self.desk_sends())
        self.current = Attention(
            found.held, found.scheduler_needed_for, found.scheduler_last_beat, self.relay
        )

    def weeks(self) -> list[ReaderWeek]:
        """The readers by week as last counted; counted now (blocking: call it from a
        worker thread) before the lookout's first count, or when it has stopped."""
        counted = self.counted
        if counted is None or time.monotonic() - counted[0] > 2 * CHART_SECONDS:
            self._count_weeks()
            counted = self.counted
            assert counted is not None
        return counted[1]

    def _count_weeks(self) -> None:
        self.counted = (time.monotonic(), readers_over_time(self.engine, utcnow()))

    def _chart_due(self) -> bool:
        return self.counted is None or time.monotonic() - self.counted[0] >= CHART_SECONDS

    def _relay_due(self) -> bool:
        wait = RELAY_FAILING_SECONDS if self.relay else RELAY_SECONDS
        busy = self.relay_thread is not None and self.relay_thread.is_alive()
        return not busy and time.monotonic() - self.relay_checked >= wait

    def _check_relay(self) -> None:
        self.relay = relay_problem(self.settings)
        self.relay_checked = time.monotonic()
        try:
            self.refresh()
        except Exception:
            log.exception("the desk's lookout failed; trying again soon")

    def _run(self) -> None:
        while not self.stopping.is_set():
            try:
                if self._relay_due():
                    # its own thread: a relay slow to answer holds up nothing else
                    self.relay_thread = threading.Thread(
                        target=self._check_relay, name="desk-relay-check", daemon=True
                    )
                    self.relay_thread.start()
                self.refresh()
                if self._chart_due():
                    self._count_weeks()
            except Exception:
                log.exception("the desk's lookout failed; trying again soon")
            self.stopping.wait(REFRESH_SECONDS)
