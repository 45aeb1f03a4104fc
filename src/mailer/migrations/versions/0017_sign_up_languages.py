"""a sign-up's languages, carried by its queued mail until the subscriber is made

Revision ID: 0017
Revises: 0016
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("transactional_mail") as batch:
        batch.add_column(sa.Column("languages", sa.String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transactional_mail") as batch:
        batch.drop_column("languages")
