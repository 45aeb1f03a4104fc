"""Strikes: an address whose last deliveries all failed for reasons that blame the reader
is dead, even when no server said "no such user" (the outbox bounces it)."""

from __future__ import annotations

from sqlalchemy import Connection, and_, case, func, or_, select

from mailer.models import DELIVERIES, DeliveryStatus

# An address whose last this many deliveries all failed for good is suppressed.
HARD_FAILURES = 3
d = DELIVERIES.c
SENT, FAILED = DeliveryStatus.SENT, DeliveryStatus.FAILED


def failing_for_good(connection: Connection, subscriber_ids: list[int]) -> list[int]:
    """Subscribers whose last HARD_FAILURES deliveries, over as many issues, all
    failed for a reason that blames the reader: the address is dead even if no
    server said "no such user". A failure that blames nobody (a policy refusal)
    neither counts nor breaks the run."""
    settled = (
        select(
            d.subscriber_id,
            d.status,
            func.row_number()
            .over(partition_by=d.subscriber_id, order_by=d.id.desc())
            .label("recent"),
        )
        .where(
            d.subscriber_id.in_(subscriber_ids),
            or_(d.status == SENT, and_(d.status == FAILED, d.blames_reader.is_(True))),
        )
        .subquery()
    )
    query = (
        select(settled.c.subscriber_id)
        .where(settled.c.recent <= HARD_FAILURES)
        .group_by(settled.c.subscriber_id)
        .having(
            func.count() == HARD_FAILURES,
            func.sum(case((settled.c.status == FAILED, 1), else_=0)) == HARD_FAILURES,
        )
    )
    return list(connection.execute(query).scalars())
