"""Pins (the roots of garbage collection) and garbage collection of the store."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path

from diracx.core.gc import PIN_NAME_PATTERN, GCReport, GCRequest, PinInfo, PinRequest
from diracx.db import gc
from diracx.routers.auth import CurrentUser, NormalUserAccess
from diracx.routers.dependencies import PipelineDBDep, StoreDep
from diracx.routers.errors import ErrorResponse
from diracx.routers.routing import DiracxRouter

router = DiracxRouter(policy=NormalUserAccess, prefix="/store", tags=["store"])

PinName = Annotated[
    str,
    Path(
        pattern=PIN_NAME_PATTERN,
        description="1-255 letters, digits, '.', '_', '-', ':' or '@', starting with a letter "
        "or digit",
    ),
]
NO_PIN: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such pin"}
}
NO_REALIZATION: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such realization"}
}


@router.get("/pins")
async def list_pins(db: PipelineDBDep) -> list[PinInfo]:
    """Every pin, by name."""
    return await gc.list_pins(db)


@router.put("/pins/{name}", responses=NO_REALIZATION)
async def pin_realization(
    name: PinName, request: PinRequest, user: CurrentUser, db: PipelineDBDep
) -> PinInfo:
    """Name a realization: it and its whole closure are never garbage collected. A name
    that named another realization now names this one."""
    return await gc.pin(db, name, request.rref, owner=user.sub)


@router.delete("/pins/{name}", responses=NO_PIN)
async def unpin_realization(name: PinName, db: PipelineDBDep) -> PinInfo:
    """Remove a pin (the realization stays until a collection finds it unreachable)."""
    return await gc.unpin(db, name)


@router.post("/gc")
async def collect_garbage(request: GCRequest, db: PipelineDBDep, store: StoreDep) -> GCReport:
    """Remove the realizations and blobs that no pin, no pipeline younger than
    ``keep_days`` and no live job reaches (with ``dry_run``: only say what would go).
    Objects younger than ``grace_seconds`` always stay; with ``target_size``, the
    oldest go first until the store holds at most that many bytes."""
    return await gc.collect(db, store, request)
