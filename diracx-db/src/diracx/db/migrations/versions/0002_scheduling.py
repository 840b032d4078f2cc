"""scheduling: queues and resources, retries and backoff, worker capacities

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("queue", sa.String(length=64), nullable=False, server_default="default")
        )
        batch.add_column(sa.Column("cpus", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("memory_mb", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("gpus", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("retries", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("retry_backoff", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("failures", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("reschedules", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("not_before", UTC_DATETIME, nullable=True))
    op.create_index("ix_jobs_status_queue", "jobs", ["status", "queue"])
    with op.batch_alter_table("workers") as batch:
        batch.add_column(
            sa.Column("queues", sa.Text(), nullable=False, server_default='["default"]')
        )
        batch.add_column(sa.Column("slots", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(sa.Column("memory_mb", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("gpus", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("stopped", UTC_DATETIME, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("workers") as batch:
        for name in ("stopped", "gpus", "memory_mb", "slots", "queues"):
            batch.drop_column(name)
    op.drop_index("ix_jobs_status_queue", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for name in (
            "not_before",
            "reschedules",
            "failures",
            "retry_backoff",
            "retries",
            "gpus",
            "memory_mb",
            "cpus",
            "queue",
        ):
            batch.drop_column(name)
