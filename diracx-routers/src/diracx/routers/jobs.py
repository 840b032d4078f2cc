"""Read jobs and their status history."""

from __future__ import annotations

from diracx.core.exceptions import ObjectNotFoundError
from diracx.core.models import JobInfo
from diracx.routers.auth import NormalUserAccess
from diracx.routers.dependencies import PipelineDBDep
from diracx.routers.errors import ErrorResponse
from diracx.routers.params import JobId
from diracx.routers.routing import DiracxRouter

router = DiracxRouter(policy=NormalUserAccess, prefix="/jobs", tags=["jobs"])


@router.get("/{job_id}", responses={404: {"model": ErrorResponse, "description": "No such job"}})
async def get_job(job_id: JobId, db: PipelineDBDep) -> JobInfo:
    """A job with its status history."""
    info = await db.get_job(job_id)
    if info is None:
        raise ObjectNotFoundError(f"job {job_id} does not exist")
    return info
