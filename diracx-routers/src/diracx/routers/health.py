"""Health probes (public): live, ready, startup.

- ``live``: the process answers (a restart is the cure for anything else).
- ``startup``: the app's lifespan has opened the configuration, the database, the store
  and the job queue; until then, 503.
- ``ready``: the service can do its work now: the database and the broker answer, each
  within a bounded time. While either does not, 503 with the reason (the load balancer
  sends requests elsewhere; nothing restarts).
"""

from __future__ import annotations

import logging
from typing import Literal

import anyio
from fastapi import HTTPException, Request, status
from pydantic import BaseModel

from diracx.routers.auth import PublicAccess
from diracx.routers.dependencies import get_job_queue, get_pipeline_db
from diracx.routers.errors import ErrorResponse
from diracx.routers.queue import BrokerUnreachableError
from diracx.routers.routing import DiracxRouter

logger = logging.getLogger(__name__)
READY_TIMEOUT = 5.0  # seconds for the database; as much again for the broker

router = DiracxRouter(policy=PublicAccess(), prefix="/health", tags=["health"])


class LiveStatus(BaseModel):
    status: Literal["live"] = "live"


class ReadyStatus(BaseModel):
    status: Literal["ready"] = "ready"


class StartupStatus(BaseModel):
    status: Literal["started"] = "started"


def unavailable(message: str) -> HTTPException:
    logger.warning("not ready: %s", message)
    return HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=message)


@router.get("/live")
async def live() -> LiveStatus:
    """The process answers."""
    return LiveStatus()


def started(request: Request) -> bool:
    return bool(getattr(request.app.state, "started", False))


NOT_STARTED = "the service has not finished starting"


@router.get(
    "/startup",
    responses={503: {"model": ErrorResponse, "description": "The service is still starting"}},
)
async def startup(request: Request) -> StartupStatus:
    """The service has started: configuration, database, store and job queue are open."""
    if not started(request):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, detail=NOT_STARTED)
    return StartupStatus()


@router.get(
    "/ready",
    responses={
        503: {
            "model": ErrorResponse,
            "description": "Not started yet, or the database or the broker does not answer",
        }
    },
)
async def ready(request: Request) -> ReadyStatus:
    """The service can do its work: the database and the broker answer."""
    if not started(request):
        raise unavailable(NOT_STARTED)
    db, queue = get_pipeline_db(request), get_job_queue(request)
    try:
        with anyio.fail_after(READY_TIMEOUT):
            await db.ping()
    except Exception as exc:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise unavailable(f"the database does not answer: {reason}") from None
    try:
        await queue.ping(READY_TIMEOUT)
    except BrokerUnreachableError as exc:
        raise unavailable(f"the broker does not answer: {exc}") from None
    return ReadyStatus()
