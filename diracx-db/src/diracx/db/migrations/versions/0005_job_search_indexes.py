"""job search indexes: jobs by name (prefix ``like``) and by pipeline

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain B-tree serves ``name LIKE 'prefix%'`` on PostgreSQL only under the C
    # collation (the test servers' initdb --locale=C); SQLite uses it through GLOB.
    op.create_index("ix_jobs_name", "jobs", ["name"])
    op.create_index("ix_jobs_pipeline", "jobs", ["pipeline_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_pipeline", table_name="jobs")
    op.drop_index("ix_jobs_name", table_name="jobs")
