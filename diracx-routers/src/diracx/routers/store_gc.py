"""Pins (the roots of garbage collection, per VO) and garbage collection of the store.

The store is shared: a collection is global (every VO's pins and pipelines are its
roots), so only a service administrator may start one. Pins belong to a VO; a user
moves or removes their own, an administrator of the VO (VOAdmin) anyone's.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path

from diracx.core.config import SERVICE_ADMIN, VO_ADMIN
from diracx.core.gc import PIN_NAME_PATTERN, GCReport, GCRequest, PinInfo, PinRequest
from diracx.db import gc
from diracx.routers.auth import CurrentUser, NormalUserAccess, PropertyAccess
from diracx.routers.dependencies import PipelineDBDep, StoreDep
from diracx.routers.errors import ErrorResponse
from diracx.routers.routing import DiracxRouter

router = DiracxRouter(policy=NormalUserAccess, prefix="/store", tags=["store"])

# On top of the router's policy: garbage collection is the whole service's business.
ServiceAdminAccess = PropertyAccess(SERVICE_ADMIN)

PinName = Annotated[
    str,
    Path(
        pattern=PIN_NAME_PATTERN,
        description="1-255 letters, digits, '.', '_', '-', ':' or '@', starting with a letter "
        "or digit",
    ),
]
FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: {
        "model": ErrorResponse,
        "description": "Another user's pin: only its owner or a VOAdmin may change it",
    }
}
NO_PIN: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such pin"},
    **FORBIDDEN,
}
NO_REALIZATION: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such realization"},
    **FORBIDDEN,
}


@router.get("/pins")
async def list_pins(user: CurrentUser, db: PipelineDBDep) -> list[PinInfo]:
    """Every pin of the caller's VO, by name."""
    return await gc.list_pins(db, user.vo)


@router.put("/pins/{name}", responses=NO_REALIZATION)
async def pin_realization(
    name: PinName, request: PinRequest, user: CurrentUser, db: PipelineDBDep
) -> PinInfo:
    """Name a realization of the VO: it and its whole closure are never garbage
    collected. A name that named another realization now names this one."""
    admin = VO_ADMIN in user.properties
    return await gc.pin(db, user.vo, name, request.rref, owner=user.sub, admin=admin)


@router.delete("/pins/{name}", responses=NO_PIN)
async def unpin_realization(name: PinName, user: CurrentUser, db: PipelineDBDep) -> PinInfo:
    """Remove a pin (the realization stays until a collection finds it unreachable)."""
    return await gc.unpin(db, user.vo, name, user.sub, admin=VO_ADMIN in user.properties)


@router.post("/gc", dependencies=[Depends(ServiceAdminAccess)])
async def collect_garbage(request: GCRequest, db: PipelineDBDep, store: StoreDep) -> GCReport:
    """Remove the realizations and blobs that no pin, no pipeline younger than
    ``keep_days`` and no live job reaches, whatever their VO (with ``dry_run``: only say
    what would go). Objects younger than ``grace_seconds`` always stay; with
    ``target_size``, the oldest go first until the store holds at most that many bytes.
    Needs the ServiceAdministrator property."""
    return await gc.collect(db, store, request)
