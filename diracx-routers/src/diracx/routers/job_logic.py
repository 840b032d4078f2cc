"""The jobs API's logic apart from HTTP: pages of a search, actions as the caller (their
VO, their jobs unless VOAdmin), rescheduling through the queue within the VO's quotas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from diracx.core.config import VOConfig
from diracx.core.exceptions import ConflictError, DiracxError
from diracx.core.job_search import (
    HeartbeatData,
    JobActionResponse,
    JobHeartbeatResponse,
    JobSearchRequest,
    JobStatusUpdate,
    JobStatusUpdateResponse,
)
from diracx.core.models import RetryResponse
from diracx.db.jobs import JobDB
from diracx.routers.auth import AuthorizedUser
from diracx.routers.logic import PipelineNotFoundError, actor
from diracx.routers.queue import JobQueue
from diracx.routers.quotas import check_store_bytes, running_jobs_admission


class RangeNotSatisfiableError(DiracxError):
    """A page past the last match (a 416)."""

    def __init__(self, message: str, total: int) -> None:
        super().__init__(message)
        self.total = total


@dataclass
class SearchAnswer:
    """One page of a search, and how HTTP describes it."""

    jobs: list[dict[str, Any]]
    status_code: int  # 200: every match; 206: a part of them
    content_range: str  # "jobs 0-99/1234" (RFC 9110's form, with "jobs" as the unit)


async def search_jobs(
    db: JobDB, request: JobSearchRequest, page: int, per_page: int, *, vo: str
) -> SearchAnswer:
    """A page of the jobs of *vo* that match (never another VO's: the condition is the
    service's, not one of the user's filters)."""
    result = await db.search(request, page, per_page, vo=vo)
    first, rows = result.first, result.jobs
    # the count and the page are two statements: on PostgreSQL (read committed) jobs
    # submitted between them must not make the range inconsistent
    total = max(result.total, first + len(rows)) if rows else result.total
    if not rows:
        if total == 0 and page == 1:  # nothing matches: an empty, complete answer
            return SearchAnswer(jobs=[], status_code=200, content_range="jobs */0")
        raise RangeNotSatisfiableError(
            f"page {page} of {per_page} jobs starts at job {first + 1}, past the "
            f"{total} matching job(s)",
            total,
        )
    last = first + len(rows) - 1
    code = 200 if len(rows) == total else 206
    return SearchAnswer(jobs=rows, status_code=code, content_range=f"jobs {first}-{last}/{total}")


async def set_job_statuses(
    db: JobDB, updates: Mapping[int, JobStatusUpdate], user: AuthorizedUser
) -> JobStatusUpdateResponse:
    return await db.set_status(updates, actor=actor(user))


async def delete_job(db: JobDB, job_id: int, user: AuthorizedUser) -> JobActionResponse:
    return await db.delete(job_id, actor=actor(user))


async def reschedule_job(
    db: JobDB, queue: JobQueue, job_id: int, user: AuthorizedUser, limits: VOConfig | None
) -> JobActionResponse:
    """Reschedule an ended job and, if it is Waiting, tell the workers (as a submission
    does). A job that ended comes back to life: the VO's quotas apply as to a submission."""
    await check_store_bytes(db.pipelines, user.vo, limits)
    admit = running_jobs_admission(user.vo, limits, "rescheduling it")
    result, to_queue = await db.reschedule(job_id, actor=actor(user), admit=admit)
    await queue.enqueue(to_queue)
    return result


async def heartbeat(
    db: JobDB, beats: Mapping[int, HeartbeatData] | Sequence[int], user: AuthorizedUser
) -> JobHeartbeatResponse:
    """Record the heartbeats a pilot sends (job ids, or DIRAC's ``{id: data}``: the
    data is not kept)."""
    return await db.heartbeat(list(beats), actor=actor(user))


def _some(reasons: Sequence[str], shown: int = 3) -> str:
    more = len(reasons) - shown
    return "; ".join(reasons[:shown]) + (f" (and {more} more)" if more > 0 else "")


async def retry_pipeline(
    db: JobDB, queue: JobQueue, pipeline_id: int, user: AuthorizedUser, limits: VOConfig | None
) -> RetryResponse:
    """Reschedule a pipeline's Failed and Killed jobs (and so its stages that failed
    because of them), within the VO's quotas, and queue those that are ready: 404 if it
    is unknown or of another VO, 403 if another user's without VOAdmin, 409 with the
    reasons if no job can be retried."""
    await check_store_bytes(db.pipelines, user.vo, limits)
    admit = running_jobs_admission(user.vo, limits, f"retrying pipeline {pipeline_id}")
    outcome = await db.retry_pipeline(pipeline_id, actor=actor(user), admit=admit)
    if outcome is None:
        raise PipelineNotFoundError(f"pipeline {pipeline_id} does not exist")
    if not outcome.retried:
        if outcome.skipped:
            reasons = [outcome.skipped[j] for j in sorted(outcome.skipped)]
            raise ConflictError(
                f"pipeline {pipeline_id} has no job that can be retried: {_some(reasons)}"
            )
        info = await db.pipelines.get_pipeline(pipeline_id, vo=user.vo)
        state = f" (it is {info.status})" if info is not None else ""
        raise ConflictError(f"pipeline {pipeline_id} has no failed or killed job to retry{state}")
    await queue.enqueue(outcome.to_queue)
    return RetryResponse(retried=outcome.retried, skipped=outcome.skipped)
