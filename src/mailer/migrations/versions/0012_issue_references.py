"""the appeal a reader acts on: each issue's reference (what a transfer or a Vipps gift
is marked with), the images its HTML shows by cid: (the QR codes), and the links it
counts, with their clicks per issue and link

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issue") as batch:
        batch.add_column(sa.Column("reference", sa.Text(), nullable=True))
        batch.add_column(sa.Column("images", sa.Text(), nullable=False, server_default="[]"))
        batch.create_unique_constraint("uq_issue_reference", ["reference"])
    op.create_table(
        "issue_link",
        sa.Column("issue_id", sa.Integer(), nullable=False),
        sa.Column("link_id", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("appeal", sa.Boolean(), nullable=False),
        sa.Column("clicks", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["issue_id"], ["issue.id"]),
        sa.PrimaryKeyConstraint("issue_id", "link_id"),
    )


def downgrade() -> None:
    op.drop_table("issue_link")
    with op.batch_alter_table("issue") as batch:
        batch.drop_constraint("uq_issue_reference", type_="unique")
        batch.drop_column("images")
        batch.drop_column("reference")
