"""dashboard tables

Revision ID: 0001
Revises:
Create Date: 2026-12-04 14:49:30.877579
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table(
        "dashboard_jobs",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("first_seen", sa.Double(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("initiator", sa.String(length=18), nullable=True),
        sa.Column("pipeline", sa.String(length=200), nullable=True),
        sa.Column("parties", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("ended_at", sa.Double(), nullable=True),
        sa.Column("step_order", sa.JSON(), nullable=False),
        sa.Column("log_counts", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("job_id"),
    )
    with op.batch_alter_table("dashboard_jobs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_dashboard_jobs_first_seen"), ["first_seen"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_dashboard_jobs_state"), ["state"], unique=False)

    op.create_table(
        "dashboard_decisions",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("decided_ms", sa.BigInteger(), nullable=False),
        sa.Column("decision", sa.String(length=32), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["dashboard_jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "decided_ms", "decision"),
    )
    op.create_table(
        "dashboard_logs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("party", sa.String(length=18), nullable=False),
        sa.Column("envelope_id", sa.String(length=32), nullable=False),
        sa.Column("ts", sa.Double(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["dashboard_jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("dashboard_logs", schema=None) as batch_op:
        batch_op.create_index("ix_dashboard_logs_envelope", ["job_id", "envelope_id"], unique=True)
        batch_op.create_index(
            "ix_dashboard_logs_task", ["job_id", "step", "party", "id"], unique=False
        )

    op.create_table(
        "dashboard_metrics",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("party", sa.String(length=18), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("iteration", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["dashboard_jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "step", "party", "name", "kind", "iteration"),
    )
    op.create_table(
        "dashboard_steps",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("component", sa.String(length=128), nullable=True),
        sa.Column("depends", sa.JSON(), nullable=False),
        sa.Column("run_component", sa.String(length=128), nullable=True),
        sa.Column("run_role", sa.String(length=128), nullable=True),
        sa.Column("run_args", sa.JSON(), nullable=True),
        sa.Column("run_inputs", sa.JSON(), nullable=True),
        sa.Column("engines", sa.JSON(), nullable=False),
        sa.Column("stages", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["dashboard_jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "name"),
    )
    op.create_table(
        "dashboard_tasks",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("step", sa.String(length=64), nullable=False),
        sa.Column("party", sa.String(length=18), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["dashboard_jobs.job_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", "step", "party"),
    )


def downgrade() -> None:

    op.drop_table("dashboard_tasks")
    op.drop_table("dashboard_steps")
    op.drop_table("dashboard_metrics")
    with op.batch_alter_table("dashboard_logs", schema=None) as batch_op:
        batch_op.drop_index("ix_dashboard_logs_task")
        batch_op.drop_index("ix_dashboard_logs_envelope")

    op.drop_table("dashboard_logs")
    op.drop_table("dashboard_decisions")
    with op.batch_alter_table("dashboard_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_dashboard_jobs_state"))
        batch_op.drop_index(batch_op.f("ix_dashboard_jobs_first_seen"))

    op.drop_table("dashboard_jobs")
