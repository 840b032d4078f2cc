"""The store: list realizations, their provenance and sizes; closures out and in; verify.

Closures travel through the client: it asks for a closure here, downloads its
blobs through the blob routes (verified, and with S3 straight from the bucket),
and writes the archive; an import uploads the blobs the same way, then records
the realizations here, which checks every identity again. The service never
builds or relays an archive, so the object store's bytes never stream through it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query

from diracx.core.closure import (
    Closure,
    ClosureImport,
    ClosureRequest,
    ImportResult,
    Provenance,
    SizeReport,
    SizeRequest,
    VerifyReport,
)
from diracx.core.models import RealizationInfo
from diracx.db.store_queries import StoreDB
from diracx.routers import store_logic
from diracx.routers.auth import NormalUserAccess
from diracx.routers.dependencies import PipelineDBDep, StoreDep
from diracx.routers.errors import ErrorResponse
from diracx.routers.params import DIGEST_PATTERN, RRefPath
from diracx.routers.routing import DiracxRouter

router = DiracxRouter(policy=NormalUserAccess, prefix="/store", tags=["store"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such realization"}
}


def _store_db(db: PipelineDBDep) -> StoreDB:
    return StoreDB(db.engines)


@router.get("/realizations")
async def store_list_realizations(
    db: PipelineDBDep,
    name: Annotated[str | None, Query(max_length=128, description="stage name")] = None,
    dref: Annotated[str | None, Query(pattern=DIGEST_PATTERN, description="a DRef")] = None,
    prefix: Annotated[
        str | None, Query(pattern=r"^[0-9a-f]{1,64}$", description="the RRef starts with this")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[RealizationInfo]:
    """Realizations, newest first; of the stages called *name*, of one derivation, or
    whose RRef starts with *prefix*."""
    return await _store_db(db).list_realizations(name=name, dref=dref, prefix=prefix, limit=limit)


@router.get("/realizations/{rref}/provenance", responses=NOT_FOUND)
async def realization_provenance(rref: RRefPath, db: PipelineDBDep) -> Provenance:
    """A realization and every realization it was built from, recursively."""
    return await store_logic.provenance(_store_db(db), rref)


@router.post("/closure", responses=NOT_FOUND)
async def store_closure(request: ClosureRequest, db: PipelineDBDep, store: StoreDep) -> Closure:
    """The closure of realizations: themselves, their derivations, their inputs'
    realizations recursively, and every blob these need (to download, then archive)."""
    store_logic.check_digests(request.rrefs)
    return await store_logic.closure(_store_db(db), store, request.rrefs)


@router.post("/sizes", responses=NOT_FOUND)
async def store_sizes(request: SizeRequest, db: PipelineDBDep, store: StoreDep) -> SizeReport:
    """Bytes per realization (the ones named, or every one) and in all, shared blobs once."""
    store_logic.check_digests(request.rrefs)
    return await store_logic.sizes(_store_db(db), store, request.rrefs)


@router.post(
    "/import",
    responses={400: {"model": ErrorResponse, "description": "An identity does not hold"}},
)
async def store_import(request: ClosureImport, db: PipelineDBDep, store: StoreDep) -> ImportResult:
    """Record realizations from another store (upload their blobs first). Every DRef,
    RRef, input and blob is checked; nothing is recorded unless all hold."""
    return await store_logic.import_closure(_store_db(db), store, request)


@router.post("/verify")
async def store_verify(db: PipelineDBDep, store: StoreDep) -> VerifyReport:
    """Re-hash every blob of the store; report the corrupt ones and those realizations need
    but the store lacks. Slow on a large store: it reads every byte."""
    return await store_logic.verify(_store_db(db), store)
