"""Read jobs and their status history; kill them."""

from __future__ import annotations

from diracx.core.exceptions import ObjectNotFoundError
from diracx.core.models import JobInfo, KillResponse
from diracx.routers.auth import CurrentUser, NormalUserAccess
from diracx.routers.dependencies import PipelineDBDep
from diracx.routers.errors import ErrorResponse
from diracx.routers.job_search import router as job_search_router
from diracx.routers.logic import kill_job as kill_job_logic
from diracx.routers.params import JobId
from diracx.routers.routing import DiracxRouter

router = DiracxRouter(policy=NormalUserAccess, prefix="/jobs", tags=["jobs"])
# search, summary, status updates, history, delete, reschedule (DIRAC's jobs API)
router.include_router(job_search_router)


@router.get(
    "/{job_id}",
    responses={404: {"model": ErrorResponse, "description": "No such job (in your VO)"}},
)
async def get_job(job_id: JobId, user: CurrentUser, db: PipelineDBDep) -> JobInfo:
    """A job of the caller's VO with its status history."""
    info = await db.get_job(job_id, vo=user.vo)
    if info is None:
        raise ObjectNotFoundError(f"job {job_id} does not exist")
    return info


@router.post(
    "/{job_id}/kill",
    responses={
        403: {
            "model": ErrorResponse,
            "description": "Another user's job, and the caller is not a VOAdmin",
        },
        404: {"model": ErrorResponse, "description": "No such job (in your VO)"},
        409: {"model": ErrorResponse, "description": "The job already ended"},
    },
)
async def kill_job(job_id: JobId, user: CurrentUser, db: PipelineDBDep) -> KillResponse:
    """Kill a live job (the caller's own, or any of the VO's with the VOAdmin property):
    it ends Killed, and the jobs that need it fail. A worker building it stops the build
    (its whole process group) within about a second."""
    return await kill_job_logic(db, job_id, user)
