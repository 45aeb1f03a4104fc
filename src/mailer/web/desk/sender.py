"""The desk's sender: a thread of `mailer serve` that sends what the desk started. "Send
now" schedules an issue for this moment and wakes it; it also looks every POLL_SECONDS
for issues due or left unfinished, as the scheduler does (claims with leases keep the
two from sending a message twice). A send never runs in a request, so it goes on when
the editor closes the browser."""

from __future__ import annotations

from sqlalchemy import Engine

from mailer.beats import DESK_SENDER, beat
from mailer.events import event
from mailer.models import utcnow
from mailer.runs import resume_unfinished, sent_counts, start_due_issues
from mailer.settings import Settings
from mailer.waking import WakingThread

POLL_SECONDS = 15.0


class IssueSender(WakingThread):
    name = "desk-sender"

    def __init__(self, engine: Engine, settings: Settings, poll_seconds: float = POLL_SECONDS):
        super().__init__(poll_seconds)
        self.engine, self.settings = engine, settings
        self.started_at = utcnow()

    def round(self) -> None:
        beat(self.engine, DESK_SENDER, self.started_at)
        now = utcnow()
        for issue, report in start_due_issues(self.engine, self.settings, now, self.stopping):
            event("issue-sent", issue=issue.id, **sent_counts(report))
        for issue, report in resume_unfinished(self.engine, self.settings, self.stopping):
            event("issue-resumed", issue=issue.id, **sent_counts(report))
