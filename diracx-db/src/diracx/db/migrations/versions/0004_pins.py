"""pins: named realizations, the roots of garbage collection (like Nix's gcroots)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pins",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("rref", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["rref"], ["realizations.rref"]),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_index("ix_pins_rref", "pins", ["rref"])


def downgrade() -> None:
    op.drop_index("ix_pins_rref", table_name="pins")
    op.drop_table("pins")
