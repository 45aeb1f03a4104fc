"""A thread of `mailer serve` that does a round of work when woken and every
`poll_seconds` besides: the confirmation mail's sender and the desk's issue sender.
Whatever a round raises is logged and the next round tries again; the site goes on."""

from __future__ import annotations

import threading

from mailer.events import log


class WakingThread:
    name = "waking-thread"  # the thread's name, in logs and debuggers

    def __init__(self, poll_seconds: float):
        self.poll_seconds = poll_seconds
        self.woken = threading.Event()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def round(self) -> None:
        """One look for work; `self.stopping` asks it to finish early."""
        raise NotImplementedError

    def start(self) -> None:
        self.stopping.clear()
        self.thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self.thread.start()

    def wake(self) -> None:
        self.woken.set()

    def is_alive(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop looking; the message on the wire is given `timeout` seconds to finish
        (one cut off stays claimed until its lease ends, then another sender sends it)."""
        self.stopping.set()
        self.woken.set()
        if self.thread is not None:
            self.thread.join(timeout)

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.woken.clear()  # work that comes during the round wakes the next one
            try:
                self.round()
            except Exception:
                log.exception("%s: a round failed; trying again soon", self.name)
            self.woken.wait(self.poll_seconds)
