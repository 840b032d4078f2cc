"""VOs and the authorization server: a VO on pipelines, jobs and pins; which realizations
and blobs each VO may see; signing keys, token families, refresh tokens and device flows

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

LOCAL_VO = "local"  # rows made before VOs existed belong to the embedded engine's VO
Digest = sa.String(64)
When = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "pipelines", sa.Column("vo", sa.String(64), nullable=False, server_default=LOCAL_VO)
    )
    op.create_index("ix_pipelines_vo", "pipelines", ["vo", "id"])
    op.add_column("jobs", sa.Column("vo", sa.String(64), nullable=False, server_default=LOCAL_VO))
    op.add_column("jobs", sa.Column("owner", sa.String(255), nullable=False, server_default=""))
    op.create_index("ix_jobs_vo_status", "jobs", ["vo", "status"])
    op.create_index("ix_jobs_vo_name", "jobs", ["vo", "name"])
    # pin names become per VO: a new primary key, so a new table (the same on both backends)
    op.drop_index("ix_pins_rref", table_name="pins")
    op.rename_table("pins", "pins_before_vos")
    _create_pins(["vo", "name"], with_vo=True)
    op.execute(
        f"INSERT INTO pins (vo, name, rref, owner, created) "
        f"SELECT '{LOCAL_VO}', name, rref, owner, created FROM pins_before_vos"
    )
    op.drop_table("pins_before_vos")

    op.create_table(
        "realization_vos",
        sa.Column("rref", Digest, sa.ForeignKey("realizations.rref"), nullable=False),
        sa.Column("vo", sa.String(64), nullable=False),
        sa.Column("created", When, nullable=False),
        sa.PrimaryKeyConstraint("rref", "vo"),
    )
    op.create_index("ix_realization_vos_vo", "realization_vos", ["vo"])
    op.create_table(
        "blob_vos",
        sa.Column("digest", Digest, nullable=False),
        sa.Column("vo", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created", When, nullable=False),
        sa.PrimaryKeyConstraint("digest", "vo"),
    )
    op.create_index("ix_blob_vos_vo", "blob_vos", ["vo"])
    # what existed before belongs to the local VO
    op.execute(
        "INSERT INTO realization_vos (rref, vo, created) "
        f"SELECT rref, '{LOCAL_VO}', created FROM realizations"
    )

    op.create_table(
        "signing_keys",
        sa.Column("kid", sa.String(64), primary_key=True),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("private_key", sa.Text(), nullable=False),
        sa.Column("public_jwk", sa.Text(), nullable=False),
        sa.Column("created", When, nullable=False),
        sa.Column("retired", When),
    )
    op.create_table(
        "token_families",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("sub", sa.String(255), nullable=False),
        sa.Column("preferred_username", sa.String(255), nullable=False),
        sa.Column("vo", sa.String(64), nullable=False),
        sa.Column("group", sa.String(64), nullable=False),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("created", When, nullable=False),
        sa.Column("revoked", When),
        sa.Column("revoked_reason", sa.String(255)),
    )
    op.create_index("ix_token_families_sub", "token_families", ["sub"])
    op.create_index("ix_token_families_revoked", "token_families", ["revoked"])
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", Digest, primary_key=True),
        sa.Column("family_id", sa.String(64), sa.ForeignKey("token_families.id"), nullable=False),
        sa.Column("issued", When, nullable=False),
        sa.Column("expires", When, nullable=False),
        sa.Column("rotated", When),
    )
    op.create_index("ix_refresh_tokens_family", "refresh_tokens", ["family_id"])
    op.create_table(
        "device_flows",
        sa.Column("device_code_hash", Digest, primary_key=True),
        sa.Column("user_code", sa.String(16), nullable=False, unique=True),
        sa.Column("client_id", sa.String(255), nullable=False),
        sa.Column("scope", sa.String(1024), nullable=False),
        sa.Column("vo", sa.String(64), nullable=False),
        sa.Column("group", sa.String(64)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("sub", sa.String(255)),
        sa.Column("preferred_username", sa.String(255)),
        sa.Column("idp_state", sa.String(128), unique=True),
        sa.Column("idp_code_verifier", sa.String(128)),
        sa.Column("idp_nonce", sa.String(128)),
        sa.Column("created", When, nullable=False),
        sa.Column("expires", When, nullable=False),
        sa.Column("last_poll", When),
    )


def downgrade() -> None:
    op.drop_table("device_flows")
    op.drop_index("ix_refresh_tokens_family", table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    op.drop_index("ix_token_families_revoked", table_name="token_families")
    op.drop_index("ix_token_families_sub", table_name="token_families")
    op.drop_table("token_families")
    op.drop_table("signing_keys")
    op.drop_index("ix_blob_vos_vo", table_name="blob_vos")
    op.drop_table("blob_vos")
    op.drop_index("ix_realization_vos_vo", table_name="realization_vos")
    op.drop_table("realization_vos")
    op.drop_index("ix_pins_rref", table_name="pins")
    op.rename_table("pins", "pins_with_vos")
    _create_pins(["name"], with_vo=False)
    op.execute(
        f"INSERT INTO pins (name, rref, owner, created) "
        f"SELECT name, rref, owner, created FROM pins_with_vos WHERE vo = '{LOCAL_VO}'"
    )
    op.drop_table("pins_with_vos")
    op.drop_index("ix_jobs_vo_name", table_name="jobs")
    op.drop_index("ix_jobs_vo_status", table_name="jobs")
    op.drop_column("jobs", "owner")
    op.drop_column("jobs", "vo")
    op.drop_index("ix_pipelines_vo", table_name="pipelines")
    op.drop_column("pipelines", "vo")


def _create_pins(primary_key: list[str], *, with_vo: bool) -> None:
    vo = [sa.Column("vo", sa.String(64), nullable=False)] if with_vo else []
    op.create_table(
        "pins",
        *vo,
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("rref", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        sa.Column("created", When, nullable=False),
        sa.ForeignKeyConstraint(["rref"], ["realizations.rref"]),
        sa.PrimaryKeyConstraint(*primary_key),
    )
    op.create_index("ix_pins_rref", "pins", ["rref"])
