"""a random public id per subscriber, for the links' tokens instead of the sequential id

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.add_column(sa.Column("public_id", sa.Text(), nullable=True))
    subscriber = sa.table(
        "subscriber", sa.column("id", sa.Integer), sa.column("public_id", sa.Text)
    )
    connection = op.get_bind()
    ids = connection.execute(sa.select(subscriber.c.id)).scalars().all()
    statement = (
        sa.update(subscriber)
        .where(subscriber.c.id == sa.bindparam("b_id"))
        .values(public_id=sa.bindparam("b_public_id"))
    )
    for first in range(0, len(ids), 5000):
        rows = [
            {"b_id": i, "b_public_id": secrets.token_urlsafe(16)} for i in ids[first : first + 5000]
        ]
        connection.execute(statement, rows)
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.alter_column("public_id", existing_type=sa.Text(), nullable=False)
        batch_op.create_unique_constraint("uq_subscriber_public_id", ["public_id"])


def downgrade() -> None:
    with op.batch_alter_table("subscriber", schema=None) as batch_op:
        batch_op.drop_constraint("uq_subscriber_public_id", type_="unique")
        batch_op.drop_column("public_id")
