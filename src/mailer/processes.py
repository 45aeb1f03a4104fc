"""One large send spread over several processes, so it uses every CPU core: building and
sending a message holds Python's interpreter lock, so one process tops out near one
core (bench/README.md has the figures). Each extra process is a sender like any other:
it claims its own batches from the outbox with its own token, so the claims keep the
processes apart exactly as they keep apart two `mailer send` runs; the connections of
[smtp] max_connections are shared out between them.

The processes die with the one that started them (a kill -9 of `mailer send` leaves no
sender behind), and a Ctrl-C stops them all cleanly."""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.queues import Queue
from typing import Any

from sqlalchemy import Engine

from mailer.errors import DeliveryError, MailerError
from mailer.settings import Settings

# A process costs about a second to start (imports): worth it from this many messages.
MESSAGES_PER_PROCESS = 5000


def process_count(settings: Settings, pending: int) -> int:
    """How many processes a send of `pending` messages uses: [delivery] processes, or
    (0) one per core for a large send. A rate-limited send needs no more than one."""
    smtp = settings.smtp
    if smtp.max_rate_per_second or smtp.max_per_hour:
        return 1
    wanted = settings.delivery.processes or min(
        len(os.sched_getaffinity(0)), pending // MESSAGES_PER_PROCESS
    )
    return max(1, min(wanted, smtp.max_connections))


def share(connections: int, processes: int) -> list[int]:
    """Connections per process, as even as can be: 8 over 3 -> [3, 3, 2]."""
    return [connections // processes + (n < connections % processes) for n in range(processes)]


def with_helpers(
    engine: Engine,
    settings: Settings,
    issue_id: int,
    shares: list[int],
    progress: Callable[[str], None] | None,
    send_here: Callable[[Settings], tuple[dict[str, int], int]],
) -> tuple[dict[str, int], int]:
    """Run send_here (this process's share) while helper processes send the rest; the
    counts and bounces of all. Helpers report their outcomes, for the progress display."""
    context = multiprocessing.get_context("spawn")  # no fork of a threaded process
    results: Queue[Any] = context.Queue()
    helpers = [
        context.Process(
            target=_helper,
            args=(settings.replace(smtp={"max_connections": n}), issue_id, results),
            daemon=True,
        )
        for n in shares[1:]
    ]
    for helper in helpers:
        helper.start()
    relay = _Relay(results, progress, len(helpers))
    relay.start()
    try:
        counts, bounced = send_here(settings.replace(smtp={"max_connections": shares[0]}))
        for helper in helpers:
            helper.join()
    except BaseException:
        for helper in helpers:  # stop them the way Ctrl-C stopped this one
            if helper.is_alive() and helper.pid is not None:
                os.kill(helper.pid, signal.SIGTERM)
        for helper in helpers:
            helper.join()
        raise
    finally:
        relay.join()
    for status, count in relay.counts.items():
        counts[status] = counts.get(status, 0) + count
    if relay.errors:
        raise DeliveryError("; ".join(sorted(set(relay.errors))))
    return counts, bounced + relay.bounced


class _Relay(threading.Thread):
    """Passes the helpers' outcomes on to the progress display and gathers their ends."""

    def __init__(self, results: Queue[Any], progress: Callable[[str], None] | None, helpers: int):
        super().__init__(daemon=True)
        self.results = results
        self.progress = progress
        self.running = helpers
        self.counts: dict[str, int] = {}
        self.bounced = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while self.running:
            try:
                kind, value = self.results.get(timeout=1.0)
            except queue.Empty:
                continue
            if kind == "outcomes":
                self._add(value)
                continue
            self.running -= 1
            if kind == "bounced":
                self.bounced += value
            elif kind == "error":
                self.errors.append(value)

    def _add(self, counts: dict[str, int]) -> None:
        for status, count in counts.items():
            self.counts[status] = self.counts.get(status, 0) + count
            if self.progress is not None:
                for _ in range(count):
                    self.progress(status)


def _helper(settings: Settings, issue_id: int, results: Queue[Any]) -> None:
    """A helper process: sends its share of the issue, reporting each outcome."""
    _die_with_parent()
    # the terminal's Ctrl-C reaches every process; the parent stops helpers itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from sqlalchemy.exc import DBAPIError
    from sqlmodel import Session

    from mailer.db import open_database
    from mailer.delivery import deliver
    from mailer.models import Issue

    end: tuple[str, Any] = ("bounced", 0)
    tally = _Tally(results)
    try:
        engine = open_database(settings.database.url)
        with Session(engine) as session:
            issue = session.get(Issue, issue_id)
        assert issue is not None, "the issue is stored before it is sent"
        report = deliver(
            engine,
            settings,
            issue,
            tally.add,
            enqueue=False,
            retry_deferred_now=False,
            processes=1,
        )
        end = ("bounced", report.bounced)
    except KeyboardInterrupt:
        pass  # stopped by the parent: what it did not send stays queued
    except MailerError as exc:
        end = ("error", str(exc))
    except DBAPIError as exc:
        end = ("error", f"the database said: {exc.orig}")
    except Exception as exc:  # reported by the parent, which knows how to say it
        end = ("error", f"a sending process failed: {exc!r}")
    finally:
        tally.flush()
        results.put(end)


class _Tally:
    """Outcomes counted and passed on a few times a second, not one message each."""

    def __init__(self, results: Queue[Any]):
        self.results = results
        self.counts: dict[str, int] = {}
        self.last = time.monotonic()

    def add(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        if time.monotonic() - self.last >= 0.25:
            self.flush()

    def flush(self) -> None:
        if self.counts:
            self.results.put(("outcomes", self.counts))
        self.counts, self.last = {}, time.monotonic()


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (prctl PR_SET_PDEATHSIG)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the parent's lease and reclaim still cover a kill
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)
