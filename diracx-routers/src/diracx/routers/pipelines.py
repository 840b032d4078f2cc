"""Submit pipelines and follow them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, status

from diracx.core.derivation import PipelineSubmission
from diracx.core.matching import PipelinePlan
from diracx.core.models import (
    KillResponse,
    PipelineEvents,
    PipelineInfo,
    PipelinePage,
    PipelineState,
    RetryResponse,
    SubmitResponse,
)
from diracx.db.pipeline_list import MAX_LIMIT
from diracx.db.pipeline_list import list_pipelines as list_pipelines_query
from diracx.routers import job_logic
from diracx.routers.auth import CurrentUser, NormalUserAccess
from diracx.routers.dependencies import (
    ConfigDep,
    JobDBDep,
    JobQueueDep,
    PipelineDBDep,
    Settings,
    StoreDep,
)
from diracx.routers.errors import ErrorResponse
from diracx.routers.logic import (
    MAX_WAIT,
    PipelineNotFoundError,
    submit,
    wait_for_events,
)
from diracx.routers.logic import kill_pipeline as kill_pipeline_logic
from diracx.routers.params import PipelineId
from diracx.routers.planning import plan_pipeline as plan_logic
from diracx.routers.routing import DiracxRouter

router = DiracxRouter(policy=NormalUserAccess, prefix="/pipelines", tags=["pipelines"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such pipeline (in your VO)"}
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses={
        400: {
            "model": ErrorResponse,
            "description": "The pipeline is invalid, or uses blobs its VO does not have "
            "(or the client is too old)",
        },
        403: {
            "model": ErrorResponse,
            "description": "A VO quota would be exceeded, or an executor or queue is not "
            "allowed for the VO",
        },
    },
)
async def submit_pipeline(
    submission: PipelineSubmission,
    user: CurrentUser,
    db: PipelineDBDep,
    store: StoreDep,
    queue: JobQueueDep,
    settings: Settings,
    config: ConfigDep,
) -> SubmitResponse:
    """Submit a pipeline: the server re-derives and checks it, reuses what the caller's VO
    has realized and queues jobs for the rest, within the VO's quotas. A rejected
    pipeline leaves nothing behind. The secrets it carries are kept sealed until the jobs
    that need them end; they are never returned."""
    key = settings.secret_key.get_secret_value() if settings.secret_key else None
    pipeline = await submit(
        submission,
        user,
        db=db,
        store=store,
        queue=queue,
        limits=config.vos.get(user.vo),
        secret_key=key,
    )
    return SubmitResponse(pipeline=pipeline)


@router.post(
    "/plan",
    responses={
        400: {
            "model": ErrorResponse,
            "description": "The pipeline is invalid (or the client too old)",
        }
    },
)
async def plan_pipeline(
    submission: PipelineSubmission, user: CurrentUser, db: PipelineDBDep
) -> PipelinePlan:
    """A dry run: the same body as a submission; for every stage, whether the caller's VO
    would reuse or build it, and why ("cached (RRef …)", "never built", "input 'x'
    changed", "matcher some(3): 1 of 3", "forced"). Nothing is recorded."""
    return await plan_logic(submission, db, vo=user.vo)


@router.get("")
async def list_pipelines(
    user: CurrentUser,
    db: PipelineDBDep,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="pipelines per page")] = 50,
    cursor: Annotated[
        int | None,
        Query(
            ge=1,
            le=2**63 - 1,
            description="the previous page's next_cursor: the pipelines older than it",
        ),
    ] = None,
    owner: Annotated[
        str | None, Query(min_length=1, max_length=255, description="only this user's")
    ] = None,
    status: Annotated[PipelineState | None, Query(description="only those in this state")] = None,
) -> PipelinePage:
    """The caller's VO's pipelines, newest first, each with its owner, its targets and how
    many of its stages are in each state (cached, or a job status). Cursor pagination:
    the answer's ``next_cursor`` fetches the next (older) page, and pipelines submitted
    meanwhile never shift the pages."""
    return await list_pipelines_query(
        db.engines, vo=user.vo, limit=limit, cursor=cursor, owner=owner, state=status
    )


@router.get("/{pipeline_id}", responses=NOT_FOUND)
async def get_pipeline(
    pipeline_id: PipelineId, user: CurrentUser, db: PipelineDBDep
) -> PipelineInfo:
    """A pipeline of the caller's VO with each stage: cached, or the job that builds it."""
    info = await db.get_pipeline(pipeline_id, vo=user.vo)
    if info is None:
        raise PipelineNotFoundError(f"pipeline {pipeline_id} does not exist")
    return info


@router.get("/{pipeline_id}/events", responses=NOT_FOUND)
async def pipeline_events(
    pipeline_id: PipelineId,
    user: CurrentUser,
    db: PipelineDBDep,
    after: Annotated[int, Query(ge=0, description="return events after this event id")] = 0,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT,
            description="seconds to wait for a new event (long poll); 0 answers at once",
        ),
    ] = 0,
) -> PipelineEvents:
    """Status changes of the pipeline's jobs since *after*; with *wait*, a long poll that
    returns as soon as something happens or the pipeline is finished."""
    return await wait_for_events(db, pipeline_id, after=after, wait=wait, vo=user.vo)


_NOT_YOURS: dict[int | str, dict[str, Any]] = {
    403: {
        "model": ErrorResponse,
        "description": "Another user's pipeline, and the caller is not a VOAdmin",
    }
}
_KILL_RESPONSES: dict[int | str, dict[str, Any]] = {
    **NOT_FOUND,
    **_NOT_YOURS,
    409: {"model": ErrorResponse, "description": "The pipeline has no live job"},
}


@router.post("/{pipeline_id}/cancel", responses=_KILL_RESPONSES)
async def cancel_pipeline(
    pipeline_id: PipelineId, user: CurrentUser, db: PipelineDBDep
) -> KillResponse:
    """Cancel a pipeline: kill every live job of it (Killed; their builds stop within
    about a second). A job it shares with another pipeline is killed too (that one
    fails), if the caller may kill it: their own, or any with the VOAdmin property."""
    return await kill_pipeline_logic(db, pipeline_id, user)


@router.post("/{pipeline_id}/kill", responses=_KILL_RESPONSES, deprecated=True)
async def kill_pipeline(
    pipeline_id: PipelineId, user: CurrentUser, db: PipelineDBDep
) -> KillResponse:
    """The former name of ``POST /api/pipelines/{pipeline_id}/cancel``: the same."""
    return await kill_pipeline_logic(db, pipeline_id, user)


@router.post(
    "/{pipeline_id}/retry",
    responses={
        **NOT_FOUND,
        403: {
            "model": ErrorResponse,
            "description": "Another user's pipeline, and the caller is not a VOAdmin (or a "
            "VO quota)",
        },
        409: {"model": ErrorResponse, "description": "No job of the pipeline can be retried"},
    },
)
async def retry_pipeline(
    pipeline_id: PipelineId,
    user: CurrentUser,
    db: JobDBDep,
    queue: JobQueueDep,
    config: ConfigDep,
) -> RetryResponse:
    """Build a pipeline's Failed and Killed jobs again, and so the stages that failed
    because of them, within the VO's quotas (as ``POST /api/jobs/{id}/reschedule`` does
    each one): Waiting, or Checking until their inputs are built. The answer lists the
    jobs retried, and the failed ones left as they are with the reason (another user's
    job it shares, without VOAdmin; secrets dropped when it ended; an input that stays
    failed)."""
    return await job_logic.retry_pipeline(db, queue, pipeline_id, user, config.vos.get(user.vo))
