"""what the desk's work needs: an editor's second factor, what the cleaner left out of
an article (so an editor can put it back), an issue's subject and preheader as an
editor typed them, a transactional mail to an editor, and the
beat of each long-running service (so the desk can tell one that stopped)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "service_beat",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name"),
    )
    with op.batch_alter_table("editor") as batch:
        batch.add_column(sa.Column("totp_secret", sa.Text(), nullable=True))
        batch.add_column(
            sa.Column("totp_enabled", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("article") as batch:
        batch.add_column(sa.Column("left_out", sa.Text(), nullable=False, server_default="[]"))
    with op.batch_alter_table("issue") as batch:
        batch.add_column(sa.Column("edited_subject", sa.String(), nullable=True))
        batch.add_column(sa.Column("edited_preheader", sa.String(), nullable=True))
    with op.batch_alter_table("transactional_mail") as batch:
        batch.add_column(sa.Column("editor_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("transactional_mail") as batch:
        batch.drop_column("editor_id")
    with op.batch_alter_table("issue") as batch:
        batch.drop_column("edited_preheader")
        batch.drop_column("edited_subject")
    with op.batch_alter_table("article") as batch:
        batch.drop_column("left_out")
    with op.batch_alter_table("editor") as batch:
        batch.drop_column("totp_enabled")
        batch.drop_column("totp_secret")
    op.drop_table("service_beat")
