"""what each issue raised: the gifts imported from bank statements, Vipps reports and
plain CSV files (attributed to an issue by its reference); who gives, so that their copy
thanks them instead of asking (a subscriber's donor_until, fixed on each delivery when
it is queued); and the donors' copy of an issue

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gift",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(), nullable=False),
        sa.Column("source_key", sa.Text(), nullable=False),
        sa.Column("received_on", sa.Date(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(), nullable=False),
        sa.Column("reference", sa.String(), nullable=True),
        sa.Column("issue_id", sa.Integer(), nullable=True),
        sa.Column("remittance", sa.Text(), nullable=False),
        sa.Column("payer_name", sa.String(), nullable=True),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("thanked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["issue_id"], ["issue.id"]),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_key"),
    )
    op.create_index("ix_gift_received_on", "gift", ["received_on"])
    op.create_index("ix_gift_issue_id", "gift", ["issue_id"])
    op.create_index("ix_gift_subscriber_id", "gift", ["subscriber_id"])
    with op.batch_alter_table("subscriber") as batch:
        batch.add_column(sa.Column("donor_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("donor_by", sa.String(), nullable=True))
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(
            sa.Column("donor", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("issue") as batch:
        batch.add_column(sa.Column("thanks_html", sa.Text(), nullable=False, server_default=""))
        batch.add_column(sa.Column("thanks_text", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("issue") as batch:
        batch.drop_column("thanks_text")
        batch.drop_column("thanks_html")
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("donor")
    with op.batch_alter_table("subscriber") as batch:
        batch.drop_column("donor_by")
        batch.drop_column("donor_until")
    op.drop_index("ix_gift_subscriber_id", table_name="gift")
    op.drop_index("ix_gift_issue_id", table_name="gift")
    op.drop_index("ix_gift_received_on", table_name="gift")
    op.drop_table("gift")
