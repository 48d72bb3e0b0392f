"""lifecycle: each party's view of a job, the acceptance deadline, automatic retries

Revision ID: 0002_lifecycle
Revises: 0001
Create Date: 2026-11-22 01:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_lifecycle"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("accept_deadline_ms", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("step_attempts", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("step_retries", sa.JSON(), nullable=True))
    with op.batch_alter_table("job_parties", schema=None) as batch_op:
        batch_op.add_column(sa.Column("job_state", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("job_reason", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_parties", schema=None) as batch_op:
        batch_op.drop_column("job_reason")
        batch_op.drop_column("job_state")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("step_retries")
        batch_op.drop_column("step_attempts")
        batch_op.drop_column("accept_deadline_ms")
