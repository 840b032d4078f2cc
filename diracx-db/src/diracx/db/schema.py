"""The tables, as SQLAlchemy Core. Alembic migrations (``migrations/``) create them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.types import TypeDecorator

from diracx.core.config import LOCAL_VO

# Integer primary keys that autoincrement on SQLite (INTEGER) and PostgreSQL (BIGINT).
BigIntId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


Digest = String(64)
metadata = MetaData()

pipelines = Table(
    "pipelines",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("owner", String(255), nullable=False),
    Column("vo", String(64), nullable=False, default=LOCAL_VO),
    Column("created", UTCDateTime, nullable=False),
    Column("targets", Text, nullable=False),  # JSON list of DRefs
    Index("ix_pipelines_vo", "vo", "id"),
)

derivations = Table(
    "derivations",
    metadata,
    Column("dref", Digest, primary_key=True),
    Column("name", String(128), nullable=False),
    Column("body", Text, nullable=False),  # canonical JSON, as hashed
    Column("created", UTCDateTime, nullable=False),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("pipeline_id", ForeignKey("pipelines.id"), nullable=False),
    Column("dref", ForeignKey("derivations.dref"), nullable=False),
    Column("name", String(128), nullable=False),
    # who submitted it (copied from the pipeline: every jobs query filters by VO)
    Column("vo", String(64), nullable=False, default=LOCAL_VO),
    Column("owner", String(255), nullable=False, default=""),
    Column("status", String(32), nullable=False),
    Column("minor_status", String(512), nullable=False, default=""),
    Column("worker", String(255)),
    Column("attempt", Integer, nullable=False, default=1),
    Column("pending_inputs", Integer, nullable=False, default=0),
    Column("created", UTCDateTime, nullable=False),
    Column("updated", UTCDateTime, nullable=False),
    Column("heartbeat", UTCDateTime),
    Column("rref", Digest),
    Column("log", Digest),
    # scheduling (diracx.core.derivation.Scheduling): not part of the DRef
    Column("queue", String(64), nullable=False, default="default"),
    Column("cpus", Integer, nullable=False, default=1),
    Column("memory_mb", Integer, nullable=False, default=0),
    Column("gpus", Integer, nullable=False, default=0),
    Column("retries", Integer, nullable=False, default=0),  # allowed retries of own failures
    Column("retry_backoff", Float, nullable=False, default=0.0),  # seconds, doubled per retry
    Column("failures", Integer, nullable=False, default=0),  # own failures so far
    Column("reschedules", Integer, nullable=False, default=0),  # lost workers so far
    Column("not_before", UTCDateTime),  # backoff: not queued before this time
    # JSON: builder fields that are not part of the DRef (oci cache volumes, secret
    # variables), as this job's submission gave them
    Column("builder_extra", Text),
    # made by --force (migration 0007): built even if its inputs come out unchanged
    Column("forced", Boolean, nullable=False, default=False),
    Index("ix_jobs_status", "status"),
    Index("ix_jobs_dref", "dref"),
    Index("ix_jobs_status_queue", "status", "queue"),
    # the jobs API's searches (migration 0005): by name (``like 'prefix%'``), by pipeline
    Index("ix_jobs_name", "name"),
    Index("ix_jobs_pipeline", "pipeline_id"),
    # migration 0006: the VO filter every user's search carries
    Index("ix_jobs_vo_status", "vo", "status"),
    Index("ix_jobs_vo_name", "vo", "name"),  # ``name like 'prefix%'`` within a VO
)

# job_id needs input_job_id's realization before it can run
job_edges = Table(
    "job_edges",
    metadata,
    Column("job_id", ForeignKey("jobs.id"), primary_key=True),
    Column("input_job_id", ForeignKey("jobs.id"), primary_key=True),
    Index("ix_job_edges_input", "input_job_id"),
)

job_status_history = Table(
    "job_status_history",
    metadata,
    Column("id", BigIntId, primary_key=True, autoincrement=True),
    Column("job_id", ForeignKey("jobs.id"), nullable=False),
    Column("status", String(32), nullable=False),
    Column("minor_status", String(512), nullable=False),
    Column("timestamp", UTCDateTime, nullable=False),
    Column("source", String(64), nullable=False),
    Index("ix_job_status_history_job", "job_id", "id"),
)

# The secrets a live job needs, sealed with DIRACX_SECRET_KEY (diracx.core.secrets);
# deleted when the job ends.
job_secrets = Table(
    "job_secrets",
    metadata,
    Column("job_id", ForeignKey("jobs.id"), primary_key=True),
    Column("sealed", Text, nullable=False),
)

# Every derivation a pipeline needs: reused (rref set at submission) or built by job_id.
pipeline_stages = Table(
    "pipeline_stages",
    metadata,
    Column("pipeline_id", ForeignKey("pipelines.id"), primary_key=True),
    Column("dref", ForeignKey("derivations.dref"), primary_key=True),
    Column("job_id", ForeignKey("jobs.id")),
    Column("cached_rref", Digest),
    Index("ix_pipeline_stages_job", "job_id"),
)

realizations = Table(
    "realizations",
    metadata,
    Column("rref", Digest, primary_key=True),
    Column("dref", ForeignKey("derivations.dref"), nullable=False),
    Column("output", Digest, nullable=False),
    Column("context", Text, nullable=False),  # JSON: input name -> [rref]
    Column("metrics", Text, nullable=False, default="{}"),
    Column("log", Digest),
    Column("job_id", ForeignKey("jobs.id")),
    Column("started", UTCDateTime),
    Column("finished", UTCDateTime),
    Column("created", UTCDateTime, nullable=False),
    Index("ix_realizations_dref", "dref"),
)

# Named realizations: the roots of garbage collection (like Nix's gcroots). A pinned
# realization and its whole closure (inputs, trees, logs) are never collected.
pins = Table(
    "pins",
    metadata,
    Column("vo", String(64), primary_key=True, default=LOCAL_VO),  # names are per VO
    Column("name", String(255), primary_key=True),
    Column("rref", ForeignKey("realizations.rref"), nullable=False),
    Column("owner", String(255), nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Index("ix_pins_rref", "rref"),
)

# -- VO visibility (migration 0006) ---------------------------------------------------------
# The store is shared and content-addressed, but a VO sees only what it made or proved it
# has: the realizations its jobs produced (or imported), and the blobs it uploaded or its
# realizations contain. A digest outside these tables is "missing" for that VO, even if
# another VO stored it; uploading it again only records the claim (the bytes are kept once).

realization_vos = Table(
    "realization_vos",
    metadata,
    Column("rref", ForeignKey("realizations.rref"), primary_key=True),
    Column("vo", String(64), primary_key=True),
    Column("created", UTCDateTime, nullable=False),
    Index("ix_realization_vos_vo", "vo"),
)

blob_vos = Table(
    "blob_vos",
    metadata,
    Column("digest", Digest, primary_key=True),
    Column("vo", String(64), primary_key=True),
    Column("size", BigInteger, nullable=False),  # counted against the VO's store_bytes quota
    Column("created", UTCDateTime, nullable=False),
    Index("ix_blob_vos_vo", "vo"),
)

# -- the authorization server (migration 0006) ----------------------------------------------

# Keys that sign access tokens. The newest unretired one signs; every unretired key is
# published at /.well-known/jwks.json, so a rotation does not invalidate live tokens.
signing_keys = Table(
    "signing_keys",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("algorithm", String(16), nullable=False),
    Column("private_key", Text, nullable=False),  # PEM, sealed with DIRACX_SECRET_KEY
    Column("public_jwk", Text, nullable=False),  # JSON
    Column("created", UTCDateTime, nullable=False),
    Column("retired", UTCDateTime),  # no longer published (set after the tokens expire)
)

# One login: its refresh tokens rotate within the family; revoking the family (logout, or
# reuse of a rotated refresh token) also refuses the access tokens that carry its id.
token_families = Table(
    "token_families",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("sub", String(255), nullable=False),
    Column("preferred_username", String(255), nullable=False),
    Column("vo", String(64), nullable=False),
    Column("group", String(64), nullable=False),
    Column("client_id", String(255), nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("revoked", UTCDateTime),
    Column("revoked_reason", String(255)),
    Index("ix_token_families_sub", "sub"),
    # every replica reads the revoked families every few seconds
    Index("ix_token_families_revoked", "revoked"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", Digest, primary_key=True),  # SHA-256 of the token: never the token
    Column("family_id", ForeignKey("token_families.id"), nullable=False),
    Column("issued", UTCDateTime, nullable=False),
    Column("expires", UTCDateTime, nullable=False),
    Column("rotated", UTCDateTime),  # used once: its successor is the live one
    Index("ix_refresh_tokens_family", "family_id"),
)

# RFC 8628 device authorization requests, and the browser leg that approves them (the
# PKCE verifier and state of an external identity provider's authorization code flow).
device_flows = Table(
    "device_flows",
    metadata,
    Column("device_code_hash", Digest, primary_key=True),
    Column("user_code", String(16), nullable=False, unique=True),
    Column("client_id", String(255), nullable=False),
    Column("scope", String(1024), nullable=False),
    Column("vo", String(64), nullable=False),
    Column("group", String(64)),
    Column("status", String(16), nullable=False),  # pending, approved, denied, consumed
    Column("sub", String(255)),
    Column("preferred_username", String(255)),
    Column("idp_state", String(128), unique=True),
    Column("idp_code_verifier", String(128)),
    Column("idp_nonce", String(128)),
    Column("created", UTCDateTime, nullable=False),
    Column("expires", UTCDateTime, nullable=False),
    Column("last_poll", UTCDateTime),
)

workers = Table(
    "workers",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("hostname", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("queues", Text, nullable=False, default='["default"]'),  # JSON list
    Column("slots", Integer, nullable=False, default=1),
    Column("memory_mb", Integer, nullable=False, default=0),  # 0: not declared, no limit
    Column("gpus", Integer, nullable=False, default=0),
    Column("stopped", UTCDateTime),  # set when it shut down cleanly
)
