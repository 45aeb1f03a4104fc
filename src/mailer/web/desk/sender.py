"""The desk's sender: a thread of `mailer serve` that sends what the desk started. "Send
now" schedules an issue for this moment and wakes it; it also looks every POLL_SECONDS
for issues due or left unfinished, as the scheduler does (claims with leases keep the
two from sending a message twice). A send never runs in a request, so it goes on when
the editor closes the browser."""

from __future__ import annotations

import threading

from sqlalchemy import Engine

from mailer.beats import DESK_SENDER, beat
from mailer.events import event, log
from mailer.models import utcnow
from mailer.runs import resume_unfinished, sent_counts, start_due_issues
from mailer.settings import Settings

POLL_SECONDS = 15.0


class IssueSender:
    def __init__(self, engine: Engine, settings: Settings, poll_seconds: float = POLL_SECONDS):
        self.engine, self.settings, self.poll_seconds = engine, settings, poll_seconds
        self.woken = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.stopping.clear()
        self.thread = threading.Thread(target=self._run, name="desk-sender", daemon=True)
        self.thread.start()

    def is_alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def wake(self) -> None:
        self.woken.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop sending; the message on the wire is given `timeout` seconds to finish, the
        rest stays queued for the next start (or the scheduler)."""
        self.stopping.set()
        self.woken.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def send_what_is_due(self) -> None:
        now = utcnow()
        for issue, report in start_due_issues(self.engine, self.settings, now, self.stopping):
            event("issue-sent", issue=issue.id, **sent_counts(report))
        for issue, report in resume_unfinished(self.engine, self.settings, self.stopping):
            event("issue-resumed", issue=issue.id, **sent_counts(report))

    def _run(self) -> None:
        started_at = utcnow()
        while not self.stopping.is_set():
            self.woken.clear()  # a send started during this round wakes the next one
            try:
                beat(self.engine, DESK_SENDER, started_at)
                self.send_what_is_due()
            except Exception:
                log.exception("the desk's sender failed; trying again soon")
            self.woken.wait(self.poll_seconds)
