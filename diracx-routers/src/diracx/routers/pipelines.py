"""Submit pipelines and follow them."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query, status

from diracx.core.derivation import PipelineSubmission
from diracx.core.matching import PipelinePlan
from diracx.core.models import KillResponse, PipelineEvents, PipelineInfo, SubmitResponse
from diracx.routers.auth import CurrentUser, NormalUserAccess
from diracx.routers.dependencies import ConfigDep, JobQueueDep, PipelineDBDep, Settings, StoreDep
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


@router.post(
    "/{pipeline_id}/kill",
    responses={
        **NOT_FOUND,
        403: {
            "model": ErrorResponse,
            "description": "Another user's pipeline, and the caller is not a VOAdmin",
        },
        409: {"model": ErrorResponse, "description": "The pipeline has no live job"},
    },
)
async def kill_pipeline(
    pipeline_id: PipelineId, user: CurrentUser, db: PipelineDBDep
) -> KillResponse:
    """Kill every live job of the pipeline (Killed; their builds stop within about a
    second). A job it shares with another pipeline is killed too (that one fails), if the
    caller may kill it: their own, or any with the VOAdmin property."""
    return await kill_pipeline_logic(db, pipeline_id, user)
