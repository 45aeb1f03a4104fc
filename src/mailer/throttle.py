"""Sending rate limits, as a relay asks: messages per second, sent evenly spaced (so no
one-second window ever holds more, and the average is the rate), and at most N in any
hour; the rate is halved when the server says we are too fast, and doubled again after
ten quiet seconds."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class Window:
    """At most `limit` events in any `seconds`-long window: the times of the last `limit`
    events are kept, and the next waits until the oldest of them has left the window."""

    def __init__(self, limit: int, seconds: float):
        self.limit = limit
        self.seconds = seconds
        self.times: deque[float] = deque(maxlen=limit)

    def delay(self, now: float) -> float:
        if len(self.times) < self.limit:
            return 0.0
        return max(0.0, self.times[0] + self.seconds - now)

    def record(self, now: float) -> None:
        self.times.append(now)


class Spacing:
    """Events at least 1/rate seconds apart: never more than `rate` in any second, and no
    burst to catch up after a slow spell."""

    def __init__(self, rate: float):
        self.interval = 1.0 / rate
        self.next = float("-inf")

    def delay(self, now: float) -> float:
        return max(0.0, self.next - now)

    def record(self, now: float) -> None:
        self.next = max(now, self.next) + self.interval


RECOVER_SECONDS = 10.0


class Throttle:
    def __init__(
        self,
        per_second: float = 0,
        per_hour: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
    ):
        self.clock = clock
        self.stopped = threading.Event()  # set when the run stops: no one waits on
        self.sleep = sleep or self.stopped.wait
        self.per_second = self.configured = per_second
        self.spacing = Spacing(per_second) if per_second else None
        self.hour = Window(per_hour, 3600.0) if per_hour else None
        self.recent: deque[float] = deque()  # sends of the last second, to slow down from
        self.slowed_at = float("-inf")
        self.unlimited_rate = 0.0
        self.lock = threading.Lock()  # the connections' senders share one throttle

    def wait(self) -> None:
        """Block until one more message may go, and count it: each caller reserves the
        next free slot, then sleeps until it comes."""
        with self.lock:
            now = self.clock()
            self._recover(now)
            limits = [limit for limit in (self.spacing, self.hour) if limit is not None]
            at = now + max((limit.delay(now) for limit in limits), default=0.0)
            for limit in limits:
                limit.record(at)
            self.recent.append(at)
            while self.recent[0] <= at - 1.0:
                self.recent.popleft()
        if at > now:
            self.sleep(at - now)

    def slow_down(self) -> None:
        """The server says we send too fast (421, "too many"): halve the rate per second
        (the configured one, else what the last second carried) until ten quiet seconds
        have passed. Several connections told at once slow down once: at most once a
        second."""
        with self.lock:
            now = self.clock()
            if now - self.slowed_at < 1.0:
                return
            self.slowed_at = now
            self._slow_down()

    def _recover(self, now: float) -> None:
        """Ten quiet seconds after slowing down, double the rate again, up to what was
        configured (or no limit): one burst of 421s must not slow the rest of a long send."""
        if self.per_second == self.configured or now - self.slowed_at < RECOVER_SECONDS:
            return
        self.slowed_at = now
        self.per_second *= 2
        if self.configured and self.per_second >= self.configured:
            self.per_second = self.configured
        elif not self.configured and self.per_second >= self.unlimited_rate:
            self.per_second, self.spacing = 0, None
            return
        self.spacing = Spacing(self.per_second)
        self.spacing.record(now)

    def _slow_down(self) -> None:
        current = self.per_second or max(len(self.recent), 1)
        if not self.per_second:
            self.unlimited_rate = current  # what "no limit" carried: the rate to return to
        self.per_second = max(current / 2, 0.1)
        self.spacing = Spacing(self.per_second)
        self.spacing.record(self.clock())
