"""owner-chosen outputs and failure codes: where a job's outputs go here and why; a task's code

Revision ID: 0007_output_placement
Revises: 0006_processed_by_sender
Create Date: 2026-12-04 14:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_output_placement"
down_revision: str | None = "0006_processed_by_sender"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("output_placement", sa.JSON(), nullable=True))
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("code", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("code")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("output_placement")
