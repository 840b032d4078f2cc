"""container steps: builder options that travel with the job, and encrypted job secrets

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        # JSON: the builder fields left out of the DRef (cache volumes, secret variables)
        batch.add_column(sa.Column("builder_extra", sa.Text(), nullable=True))
    op.create_table(
        "job_secrets",
        sa.Column("job_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        # the values of the secrets the job needs, sealed with DIRACX_SECRET_KEY (Fernet)
        sa.Column("sealed", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("job_id"),
    )


def downgrade() -> None:
    op.drop_table("job_secrets")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("builder_extra")
