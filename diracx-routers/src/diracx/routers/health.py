"""Liveness and readiness probes (public)."""

from __future__ import annotations

import logging
from typing import Literal

import anyio
from fastapi import HTTPException, status
from pydantic import BaseModel

from diracx.routers.auth import PublicAccess
from diracx.routers.dependencies import PipelineDBDep
from diracx.routers.errors import ErrorResponse
from diracx.routers.routing import DiracxRouter

logger = logging.getLogger(__name__)
READY_TIMEOUT = 5.0

router = DiracxRouter(policy=PublicAccess(), prefix="/health", tags=["health"])


class LiveStatus(BaseModel):
    status: Literal["live"] = "live"


class ReadyStatus(BaseModel):
    status: Literal["ready"] = "ready"


@router.get("/live")
async def live() -> LiveStatus:
    """The process answers."""
    return LiveStatus()


@router.get(
    "/ready",
    responses={503: {"model": ErrorResponse, "description": "The database does not answer"}},
)
async def ready(db: PipelineDBDep) -> ReadyStatus:
    """The service can do its work: the database answers."""
    try:
        with anyio.fail_after(READY_TIMEOUT):
            await db.ping()
    except Exception as exc:
        logger.warning("not ready: the database does not answer: %s", exc)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            detail=f"the database does not answer: {type(exc).__name__}: {exc}",
        ) from None
    return ReadyStatus()
