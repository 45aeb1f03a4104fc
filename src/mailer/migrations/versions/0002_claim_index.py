"""deliveries indexed by issue, status and id, so a claim reads the next rows in order

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_issue_status")
        batch_op.create_index("ix_delivery_issue_status_id", ["issue_id", "status", "id"])


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_index("ix_delivery_issue_status_id")
        batch_op.create_index("ix_delivery_issue_status", ["issue_id", "status"])
