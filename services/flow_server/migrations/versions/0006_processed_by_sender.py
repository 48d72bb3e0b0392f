"""processed messages keyed by (sender, message id)

Revision ID: 0006_processed_by_sender
Revises: 0005_platform_retries
Create Date: 2026-12-04 13:30:00

A message id alone let one party pre-empt another's message by sending its id first. The table
is rebuilt with the sender in the key; ids recorded before carry an empty sender (a redelivery of
one of them is then applied again, which every handler tolerates).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_processed_by_sender"
down_revision: str | None = "0005_platform_retries"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.rename_table("processed_messages", "processed_messages_by_id")
    op.create_table(
        "processed_messages",
        sa.Column("src", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("processed_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("src", "id", name="pk_processed_messages"),
    )
    op.execute(
        "INSERT INTO processed_messages (src, id, processed_ms) "
        "SELECT '', id, processed_ms FROM processed_messages_by_id"
    )
    op.drop_table("processed_messages_by_id")


def downgrade() -> None:
    op.rename_table("processed_messages", "processed_messages_by_src")
    op.create_table(
        "processed_messages",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("processed_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute(
        "INSERT INTO processed_messages (id, processed_ms) "
        "SELECT id, MAX(processed_ms) FROM processed_messages_by_src GROUP BY id"
    )
    op.drop_table("processed_messages_by_src")
