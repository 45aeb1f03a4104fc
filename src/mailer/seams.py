"""The send loop's two narrow seams (sendloop.py): the Store it claims from and records
into, and the Transport it sends through. Outbox (outbox.py) and SMTPTransport (smtp.py)
are the real ones; a test may put its own in their place. And the SendReport a run
gives back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from mailer.outbox import SENT, Claimed, Outcome


class Transport(Protocol):
    """Sends one message; raises smtp's failures (TemporaryFailure, PermanentFailure,
    ConnectionFailure, ContentRefused). SMTPTransport is the real one."""

    def send(self, sender: str, recipient: str, data: bytes) -> str: ...

    def close(self) -> None: ...


@runtime_checkable
class Gated(Protocol):
    """A transport that calls before_final_dot, when set, with a message written but for
    its final dot (SMTPTransport): what it raises abandons the message."""

    before_final_dot: Callable[[], None] | None


class Store(Protocol):
    """What the send loop needs from the database, for one issue: batches claimed with a
    lease, outcomes recorded, the issue held or finished. Outbox is the real one."""

    clock: Callable[[], datetime]

    def claim(self) -> list[Claimed]: ...
    def renew(self, delivery_ids: list[int]) -> tuple[list[int], datetime]: ...
    def record(self, outcomes: list[Outcome]) -> list[int]: ...
    def requeue(self, recorded: list[Claimed], struck_out: Sequence[int] = ()) -> None: ...
    def withdrawn(self, delivery_ids: Sequence[int]) -> dict[int, str]: ...
    def release(self) -> None: ...
    def finish(self) -> bool: ...
    def hold(self, reply: str) -> None: ...
    def reclaim_from_the_dead(self) -> int: ...
    def retry_deferred_now(self) -> None: ...
    def claimable(self) -> bool: ...
    def held_elsewhere(self) -> tuple[int, datetime | None]: ...
    def sent_deliveries(self) -> int: ...
    def failed_deliveries(self) -> int: ...


@dataclass
class SendReport:
    counts: dict[str, int] = field(default_factory=dict)
    bounced: int = 0

    def add(self, status: str) -> None:
        self.counts[status] = self.counts.get(status, 0) + 1

    @property
    def sent(self) -> int:
        return self.counts.get(SENT, 0)
