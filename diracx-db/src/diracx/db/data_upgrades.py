"""Data that migrations cannot move themselves: they see the database, not the store.

``dirac db upgrade`` and the embedded engine call :func:`upgrade_data` after the
schema migrations, with the revision the database was at before.
"""

from __future__ import annotations

import asyncio
import logging

from diracx.core.settings import ServiceSettings
from diracx.db.gc import backfill_blob_claims
from diracx.db.os import open_store
from diracx.db.pipelines import PipelineDB

logger = logging.getLogger(__name__)

VO_CLAIMS = "0006"  # the revision that made realizations and blobs visible per VO


def upgrade_data(settings: ServiceSettings, before: str | None) -> list[str]:
    """Bring the data up to the schema that was just migrated from *before* (None: a new
    database, nothing to do); return what was done, a line each."""
    if before is None or before >= VO_CLAIMS:
        return []
    added = asyncio.run(_backfill(settings))
    return [f"gave the local VO its claims on {added} blobs of its realizations"]


async def _backfill(settings: ServiceSettings) -> int:
    db = PipelineDB.from_settings(settings)
    try:
        return await backfill_blob_claims(db, open_store(settings))
    finally:
        await db.close()
