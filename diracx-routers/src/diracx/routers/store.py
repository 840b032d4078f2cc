"""The store: list realizations, their provenance and sizes; closures out and in; verify.

Closures travel through the client: it asks for a closure here, downloads its
blobs through the blob routes (verified, and with S3 straight from the bucket),
and writes the archive; an import uploads the blobs the same way, then records
the realizations here, which checks every identity again. The service never
builds or relays an archive, so the object store's bytes never stream through it.

Every route answers within the caller's VO: its realizations and its blobs only.
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
from diracx.core.config import SERVICE_ADMIN
from diracx.core.models import RealizationInfo
from diracx.routers import store_logic
from diracx.routers.auth import CurrentUser, NormalUserAccess
from diracx.routers.dependencies import StoreDep
from diracx.routers.errors import ErrorResponse
from diracx.routers.params import DIGEST_PATTERN, RRefPath
from diracx.routers.routing import DiracxRouter
from diracx.routers.store_deps import StoreDBDep, StoreLimit

router = DiracxRouter(policy=NormalUserAccess, prefix="/store", tags=["store"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such realization"}
}


@router.get("/realizations")
async def store_list_realizations(
    user: CurrentUser,
    sdb: StoreDBDep,
    name: Annotated[str | None, Query(max_length=128, description="stage name")] = None,
    dref: Annotated[str | None, Query(pattern=DIGEST_PATTERN, description="a DRef")] = None,
    prefix: Annotated[
        str | None, Query(pattern=r"^[0-9a-f]{1,64}$", description="the RRef starts with this")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[RealizationInfo]:
    """The VO's realizations, newest first; of the stages called *name*, of one
    derivation, or whose RRef starts with *prefix*."""
    return await sdb.list_realizations(user.vo, name=name, dref=dref, prefix=prefix, limit=limit)


@router.get("/realizations/{rref}/provenance", responses=NOT_FOUND)
async def realization_provenance(rref: RRefPath, user: CurrentUser, sdb: StoreDBDep) -> Provenance:
    """A realization and every realization it was built from, recursively."""
    return await store_logic.provenance(sdb, user.vo, rref)


@router.post("/closure", responses=NOT_FOUND)
async def store_closure(
    request: ClosureRequest, user: CurrentUser, sdb: StoreDBDep, store: StoreDep
) -> Closure:
    """The closure of realizations: themselves, their derivations, their inputs'
    realizations recursively, and every blob these need (to download, then archive)."""
    store_logic.check_digests(request.rrefs)
    return await store_logic.closure(sdb, store, user.vo, request.rrefs)


@router.post("/sizes", responses=NOT_FOUND)
async def store_sizes(
    request: SizeRequest, user: CurrentUser, sdb: StoreDBDep, store: StoreDep
) -> SizeReport:
    """Bytes per realization (the ones named, or every one of the VO) and in all, shared
    blobs once."""
    store_logic.check_digests(request.rrefs)
    return await store_logic.sizes(sdb, store, user.vo, request.rrefs)


@router.post(
    "/import",
    responses={
        400: {"model": ErrorResponse, "description": "An identity does not hold"},
        403: {"model": ErrorResponse, "description": "Over the VO's store quota"},
    },
)
async def store_import(
    request: ClosureImport,
    user: CurrentUser,
    sdb: StoreDBDep,
    store: StoreDep,
    limit: StoreLimit,
) -> ImportResult:
    """Record realizations from another store (upload their blobs first). Every DRef,
    RRef, input and blob is checked; nothing is recorded unless all hold. The VO gets
    the realizations and their blobs."""
    return await store_logic.import_closure(sdb, store, user.vo, request, limit)


@router.post("/verify")
async def store_verify(user: CurrentUser, sdb: StoreDBDep, store: StoreDep) -> VerifyReport:
    """Re-hash every blob of the VO (of the whole store for a service administrator);
    report the corrupt ones and those its realizations need but the store lacks. Slow
    on a large store: it reads every byte."""
    vo = None if SERVICE_ADMIN in user.properties else user.vo
    return await store_logic.verify(sdb, store, vo)
