"""what comes back after the relay said yes: bounce events (hard, soft, complaint, an
unsubscribe by mail) per subscriber, the soft-bounce score as Mailman keeps it, and the
step of a welcome series a transactional mail is

Revision ID: 0014
Revises: 0013
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bounce_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(), nullable=False),
        sa.Column("status", sa.String(), nullable=False, server_default=""),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("source", sa.Text(), nullable=False, server_default=""),
        sa.Column("message_key", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"]),
        sa.ForeignKeyConstraint(["issue_id"], ["issue.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_key", "subscriber_id", name="uq_bounce_event_message"),
    )
    op.create_index("ix_bounce_event_subscriber_id", "bounce_event", ["subscriber_id", "id"])
    with op.batch_alter_table("subscriber") as batch:
        batch.add_column(
            sa.Column("bounce_score", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("bounce_score_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("transactional_mail") as batch:
        batch.add_column(sa.Column("step", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transactional_mail") as batch:
        batch.drop_column("step")
    with op.batch_alter_table("subscriber") as batch:
        batch.drop_column("bounce_score_at")
        batch.drop_column("bounce_score")
    op.drop_index("ix_bounce_event_subscriber_id", table_name="bounce_event")
    op.drop_table("bounce_event")
