"""One large send spread over several processes, so it uses every CPU core: building and
sending a message holds Python's interpreter lock, so one process tops out near one
core (bench/README.md has the figures). Each extra process is a sender like any other:
it claims its own batches from the outbox with its own token, so the claims keep the
processes apart exactly as they keep apart two `mailer send` runs; the connections of
[smtp] max_connections are shared out between them.

The processes die with the one that started them (a kill -9 of `mailer send` leaves no
sender behind), and a Ctrl-C stops them all cleanly. Also here: how a sender names itself
so that another on the same machine can tell it has died, and how a send turns Ctrl-C
and SIGTERM into a request to stop.

This module knows nothing of what a sender does: the engine hands it the function a
helper process runs."""

from __future__ import annotations

import hashlib
import os
import queue
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from mailer.errors import DeliveryError, MailerError
from mailer.settings import Settings

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess
    from multiprocessing.queues import Queue

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


# What a helper process runs: send its share of the issue over so many connections,
# telling `progress` each outcome; returns how many addresses bounced. A function at
# module level, so a spawned process can import it by name.
HelperSend = Callable[[Settings, int, int, Callable[[str], None]], int]


def with_helpers(
    settings: Settings,
    issue_id: int,
    shares: list[int],
    progress: Callable[[str], None] | None,
    send_here: Callable[[int], tuple[dict[str, int], int]],
    helper_send: HelperSend,
    close_database: Callable[[], None],
) -> tuple[dict[str, int], int]:
    """Run send_here over this process's connections (the first share) while helper
    processes run helper_send over the others; the counts and bounces of all. Helpers
    report their outcomes, for the progress display. close_database closes this
    process's pooled connections, so that a helper can be forked (see start_method)."""
    import multiprocessing  # here: a send in one process does not load it

    close_database()
    context: multiprocessing.context.ForkContext | multiprocessing.context.SpawnContext
    if start_method(settings.database.url) == "fork":
        context = multiprocessing.get_context("fork")
    else:
        context = multiprocessing.get_context("spawn")
    results: Queue[Any] = context.Queue()
    helpers = [
        context.Process(
            target=_helper, args=(helper_send, settings, issue_id, n, results), daemon=True
        )
        for n in shares[1:]
    ]
    for helper in helpers:
        helper.start()
    relay = _Relay(results, progress, helpers)
    relay.start()
    try:
        counts, bounced = send_here(shares[0])
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
        raise HelpersFailed("; ".join(sorted(set(relay.errors))), counts, bounced + relay.bounced)
    return counts, bounced + relay.bounced


class HelpersFailed(DeliveryError):
    """A helper process ended with an error (it found the issue held, say); with the
    counts and bounces of all the processes, for a report that still says what went."""

    def __init__(self, message: str, counts: dict[str, int], bounced: int):
        super().__init__(message)
        self.counts, self.bounced = counts, bounced


def start_method(database_url: str) -> str:
    """How to start a helper: "fork" where it is safe, so the helper starts at once with
    everything imported and loaded, else "spawn", a fresh interpreter that imports it all
    again (a second here). Safe means Linux, no other thread running (a fork copies only
    the thread that forks: a lock another thread held would stay held in the helper),
    and no file of the SQLite database open in this process (SQLite's rule: its
    locking goes wrong in a child that inherits an open connection)."""
    if sys.platform != "linux" or threading.active_count() > 1:
        return "spawn"
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and _opened(Path(url.database or "")):
        return "spawn"
    return "fork"


def _opened(database: Path) -> bool:
    """Does this process hold the SQLite file, its WAL or its shared memory open? Yes
    when that cannot be told."""
    names = {str(database.resolve()) + suffix for suffix in ("", "-wal", "-shm", "-journal")}
    try:
        links = list(Path("/proc/self/fd").iterdir())
    except OSError:
        return True
    for link in links:
        try:
            if os.readlink(link) in names:
                return True
        except OSError:
            continue  # closed since it was listed (the listing's own)
    return False


class _Relay(threading.Thread):
    """Passes the helpers' outcomes on to the progress display and gathers their ends."""

    def __init__(
        self,
        results: Queue[Any],
        progress: Callable[[str], None] | None,
        helpers: Sequence[BaseProcess],
    ):
        super().__init__(daemon=True)
        self.results = results
        self.progress = progress
        self.helpers = helpers
        self.running = len(helpers)
        self.counts: dict[str, int] = {}
        self.bounced = 0
        self.errors: list[str] = []

    def run(self) -> None:
        while self.running:
            try:
                self._take(*self.results.get(timeout=1.0))
            except queue.Empty:
                self._count_the_silent_dead()

    def _take(self, kind: str, value: Any) -> None:
        if kind == "outcomes":
            self._add(value)
            return
        self.running -= 1
        if kind == "bounced":
            self.bounced += value
        elif kind == "error":
            self.errors.append(value)

    def _count_the_silent_dead(self) -> None:
        """A helper killed outright (out of memory; or stopped by the parent before it
        could take the stop calmly) never reports its end. What a helper put in the queue
        is in it by the time it has exited: once that is read, a helper dead and not
        reported is one of those, and its end an error."""
        dead = [helper.exitcode for helper in self.helpers if helper.exitcode is not None]
        while True:
            try:
                self._take(*self.results.get_nowait())
            except queue.Empty:
                break
        for code in sorted(dead)[: len(dead) - (len(self.helpers) - self.running)]:
            self.running -= 1
            self.errors.append(f"a sending process died (exit code {code})")

    def _add(self, counts: dict[str, int]) -> None:
        for status, count in counts.items():
            self.counts[status] = self.counts.get(status, 0) + count
            if self.progress is not None:
                for _ in range(count):
                    self.progress(status)


def _helper(
    send: HelperSend, settings: Settings, issue_id: int, connections: int, results: Queue[Any]
) -> None:
    """A helper process: sends its share of the issue, reporting each outcome."""
    _die_with_parent()
    # the terminal's Ctrl-C reaches every process; the parent stops helpers itself
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    end: tuple[str, Any] = ("bounced", 0)
    tally = _Tally(results)
    try:
        end = ("bounced", send(settings, issue_id, connections, tally.add))
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
    import ctypes  # here, in the helper process that needs it

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the parent's lease and reclaim still cover a kill
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


@contextmanager
def stop_on_signals(interrupted: threading.Event, install: bool = True) -> Iterator[None]:
    """Turn the first Ctrl-C (or SIGTERM) into a request the coordinator acts on between
    two database transactions, never inside one; a second Ctrl-C interrupts at once. A
    second SIGTERM does not: a service manager's stop may reach a helper process both
    from the manager and from the process that started it."""
    if not install or threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def stop(signum: int, _frame: object) -> None:
        interrupted.set()
        if signum == signal.SIGINT:
            signal.signal(signum, signal.default_int_handler)

    for signum in previous:
        signal.signal(signum, stop)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


# -- liveness: is the sender that holds a row still running? -------------------------


def _this_host() -> str:
    """This machine, boot and process namespace: where a pid means the same process."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text()
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        return "unknown"  # cannot tell: rely on leases alone
    parts = [socket.gethostname(), boot, namespace]
    return hashlib.sha256("/".join(p.strip() for p in parts).encode()).hexdigest()[:16]


HERE = _this_host()


def sender_token() -> str:
    """A name for one sender's claims, where:pid:random, so that a sender sharing the
    claimant's machine and process namespace can tell that the claimant has died."""
    return f"{HERE}:{os.getpid()}:{secrets.token_hex(4)}"


def is_dead_here(holder: str) -> bool:
    """Is the sender named `holder` (see sender_token) a process of this machine that is
    gone? False when that cannot be told (another machine, or no /proc)."""
    where, _, rest = holder.partition(":")
    pid = rest.partition(":")[0]
    if where != HERE or HERE == "unknown" or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, under another user
        return False
    return False
