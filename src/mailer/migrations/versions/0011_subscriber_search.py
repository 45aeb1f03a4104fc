"""the desk's subscriber pages: readers listed newest first off an index on their
sign-up time, and a reader's deliveries found by their subscriber; on PostgreSQL also
trigram indexes on the address and the name, so a search for part of either
(ILIKE '%…%') reads the rows that match and not the whole list. Those only where the
server lets us have pg_trgm (a trusted extension since PostgreSQL 13, but a locked-down
server may refuse it): without it the search still works, reading every row.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from alembic import op
from sqlalchemy.exc import DBAPIError

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# as mailer.db.TRIGRAM_INDEXES names them, fixed here as a migration is
TRIGRAM_INDEXES = {"ix_subscriber_email_trgm": "email", "ix_subscriber_name_trgm": "name"}


def upgrade() -> None:
    op.create_index("ix_subscriber_created_at", "subscriber", ["created_at"])
    op.create_index("ix_delivery_subscriber_id", "delivery", ["subscriber_id", "id"])
    connection = op.get_bind()
    if connection.dialect.name != "postgresql":
        return
    try:
        with connection.begin_nested():  # a refusal rolls back this alone, not the upgrade
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    except DBAPIError:
        return
    for name, column in TRIGRAM_INDEXES.items():
        op.execute(
            f"CREATE INDEX IF NOT EXISTS {name} ON subscriber USING gin ({column} gin_trgm_ops)"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in TRIGRAM_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    op.drop_index("ix_delivery_subscriber_id", "delivery")
    op.drop_index("ix_subscriber_created_at", "subscriber")
