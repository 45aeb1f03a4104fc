"""an issue the relay refused is held, with the relay's reply; a failed delivery says
whether it counts against the reader

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.add_column(sa.Column("held_reason", sa.String(), nullable=True))
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.add_column(sa.Column("blames_reader", sa.Boolean(), nullable=True))
    # failures recorded before stay NULL: counting against nobody, since some of them
    # were the relay refusing the message, which was then taken for the reader's fault


def downgrade() -> None:
    with op.batch_alter_table("delivery", schema=None) as batch_op:
        batch_op.drop_column("blames_reader")
    with op.batch_alter_table("issue", schema=None) as batch_op:
        batch_op.drop_column("held_reason")
