"""an issue's editions: its variants per readers' language (and, for a digest by
language, per choice of its articles), and the variant each delivery gets

Revision ID: 0016
Revises: 0015
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def _text(name: str, default: str = "") -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.Text(), nullable=False, server_default=default)


def upgrade() -> None:
    op.create_table(
        "issue_variant",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("language", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        _text("article_ids"),
        sa.Column("subject", sa.Text(), nullable=False),
        _text("preheader"),
        _text("html"),
        _text("text"),
        _text("thanks_html"),
        _text("thanks_text"),
        _text("images", "[]"),
        sa.ForeignKeyConstraint(["issue_id"], ["issue.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("issue_id", "key", name="uq_issue_variant_key"),
    )
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(sa.Column("variant_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("variant_id")
    op.drop_table("issue_variant")
