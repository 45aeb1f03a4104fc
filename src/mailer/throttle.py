"""Sending rate limits: no more than N messages in any one-second window (and in any hour),
as a relay asks; halved for the rest of the run when the server says we are too fast."""

from __future__ import annotations

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


class Throttle:
    def __init__(
        self,
        per_second: float = 0,
        per_hour: int = 0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.clock = clock
        self.sleep = sleep
        self.per_second = per_second
        self.second = _per_second(per_second) if per_second else None
        self.hour = Window(per_hour, 3600.0) if per_hour else None
        self.recent: deque[float] = deque()  # sends of the last second, to slow down from

    def wait(self) -> None:
        """Block until one more message may go, and count it."""
        windows = [w for w in (self.second, self.hour) if w is not None]
        now = self.clock()
        delay = max((window.delay(now) for window in windows), default=0.0)
        if delay > 0:
            self.sleep(delay)
            now = self.clock()
        for window in windows:
            window.record(now)
        self.recent.append(now)
        while self.recent[0] <= now - 1.0:
            self.recent.popleft()

    def slow_down(self) -> None:
        """The server says we send too fast (421, "too many"): halve the rate per second
        (the configured one, else what the last second carried) for the rest of the run."""
        current = self.per_second or max(len(self.recent), 1)
        self.per_second = max(current / 2, 0.1)
        self.second = _per_second(self.per_second)
        self.second.record(self.clock())


def _per_second(rate: float) -> Window:
    # a rate below one a second is one message every 1/rate seconds
    return Window(int(rate), 1.0) if rate >= 1 else Window(1, 1.0 / rate)
