"""The jobs API in DIRAC's manner: search, summary, status updates, history, delete and
reschedule (mounted under ``/api/jobs`` by ``diracx.routers.jobs``)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import Body, Query, Response, status
from pydantic import Field

from diracx.core.job_search import (
    DEFAULT_PER_PAGE,
    MAX_HEARTBEATS,
    MAX_PAGE,
    MAX_PER_PAGE,
    HeartbeatData,
    JobActionResponse,
    JobHeartbeatResponse,
    JobSearchRequest,
    JobStatusUpdate,
    JobStatusUpdateResponse,
    JobSummaryRequest,
)
from diracx.core.models import StatusHistoryEntry
from diracx.routers import job_logic
from diracx.routers.auth import CurrentUser, NormalUserAccess
from diracx.routers.dependencies import ConfigDep, JobDBDep, JobQueueDep
from diracx.routers.errors import ErrorResponse
from diracx.routers.job_logic import RangeNotSatisfiableError
from diracx.routers.params import JobId
from diracx.routers.routing import DiracxRouter

router = DiracxRouter(policy=NormalUserAccess)

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such job (in your VO)"}
}
_NOT_YOURS: dict[int | str, dict[str, Any]] = {
    403: {
        "model": ErrorResponse,
        "description": "Another user's job, and the caller is not a VOAdmin (or a VO quota)",
    }
}
_BAD_SEARCH: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Unknown attribute or operator"}
}


@router.post(
    "/search",
    response_model=list[dict[str, Any]],
    responses={
        **_BAD_SEARCH,
        206: {"description": "A page of the matches (see Content-Range)"},
        416: {"model": ErrorResponse, "description": "The page is past the last match"},
    },
)
async def search_jobs(
    body: JobSearchRequest,
    user: CurrentUser,
    db: JobDBDep,
    page: Annotated[int, Query(ge=1, le=MAX_PAGE, description="the page, from 1")] = 1,
    per_page: Annotated[
        int, Query(ge=1, le=MAX_PER_PAGE, description="jobs per page")
    ] = DEFAULT_PER_PAGE,
) -> Response:
    """Jobs of the caller's VO matching every filter, with the chosen attributes, in the
    chosen order.

    200 with every match, 206 with a part of them; Content-Range says which
    (``jobs 0-99/1234``: the 0-based first and last, and the number of matches).
    """
    try:
        answer = await job_logic.search_jobs(db, body, page, per_page, vo=user.vo)
    except RangeNotSatisfiableError as exc:
        return Response(
            json.dumps({"detail": str(exc)}),
            status_code=status.HTTP_416_RANGE_NOT_SATISFIABLE,
            media_type="application/json",
            headers={"Content-Range": f"jobs */{exc.total}"},
        )
    return Response(
        json.dumps(answer.jobs),
        status_code=answer.status_code,
        media_type="application/json",
        headers={"Content-Range": answer.content_range},
    )


@router.post("/summary", responses=_BAD_SEARCH)
async def summarize_jobs(
    body: JobSummaryRequest, user: CurrentUser, db: JobDBDep
) -> list[dict[str, Any]]:
    """The number of the caller's VO's matching jobs per distinct value of the grouping
    attributes (each item: those attributes, and ``count``)."""
    return await db.summary(body, vo=user.vo)


@router.patch("/status")
async def set_job_statuses(
    body: dict[Annotated[int, Field(ge=1, le=2**63 - 1)], JobStatusUpdate],
    user: CurrentUser,
    db: JobDBDep,
) -> JobStatusUpdateResponse:
    """Change jobs' status and minor status (DIRAC's ``{job_id: {Status, MinorStatus,
    Source}}``). Only transitions legal in DIRAC's state machine, to Failed, Killed or
    Stalled (the others are DiracX's own), of the caller's own jobs (any of the VO's with
    the VOAdmin property); each refused job is listed with the reason and left as it was
    (a job of another VO "does not exist"). Failed or Killed jobs fail the jobs that
    need them."""
    return await job_logic.set_job_statuses(db, body, user)


JobKey = Annotated[int, Field(ge=1, le=2**63 - 1)]
Heartbeats = Annotated[
    Annotated[dict[JobKey, HeartbeatData], Field(max_length=MAX_HEARTBEATS)]
    | Annotated[list[JobKey], Field(max_length=MAX_HEARTBEATS)],
    Body(
        description="job ids, or DIRAC's {job id: heartbeat data (LoadAverage, MemoryUsed...)}",
        examples=[{"12": {"LoadAverage": 0.5}}, [12, 13]],
    ),
]


@router.patch("/heartbeat")
async def add_heartbeat(body: Heartbeats, user: CurrentUser, db: JobDBDep) -> JobHeartbeatResponse:
    """A pilot reports that jobs are still being worked on (DIRAC's JobMonitoring
    heartbeat): their heartbeat time is set, as a worker's heartbeat sets it, and the
    data that comes with it is accepted but not kept. Only Running or Completing jobs,
    the caller's own (any of the VO's with the VOAdmin property); each other job is
    listed in ``failed`` with the reason (a job of another VO "does not exist")."""
    return await job_logic.heartbeat(db, body, user)


@router.get("/{job_id}/history", responses=_NOT_FOUND)
async def get_job_history(
    job_id: JobId, user: CurrentUser, db: JobDBDep
) -> list[StatusHistoryEntry]:
    """A job's status changes, oldest first."""
    return await db.history(job_id, vo=user.vo)


_CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorResponse, "description": "The job's state does not allow it"}
}


@router.delete("/{job_id}", responses={**_NOT_YOURS, **_NOT_FOUND, **_CONFLICT})
async def delete_job(job_id: JobId, user: CurrentUser, db: JobDBDep) -> JobActionResponse:
    """Mark an ended job (Done, Failed, Killed) Deleted: the caller's own, or any of the
    VO's with the VOAdmin property. Its row, history and results stay: pipelines and
    realizations refer to it."""
    return await job_logic.delete_job(db, job_id, user)


@router.post("/{job_id}/reschedule", responses={**_NOT_YOURS, **_NOT_FOUND, **_CONFLICT})
async def reschedule_job(
    job_id: JobId, user: CurrentUser, db: JobDBDep, queue: JobQueueDep, config: ConfigDep
) -> JobActionResponse:
    """Build a Failed, Killed or Stalled job again (the caller's own, or any of the VO's
    with the VOAdmin property), within the VO's quotas: Rescheduled, then Waiting (queued)
    or Checking (while an input is built), with a new attempt and a fresh retry budget."""
    return await job_logic.reschedule_job(db, queue, job_id, user, config.vos.get(user.vo))
