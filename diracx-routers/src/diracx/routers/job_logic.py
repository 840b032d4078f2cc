"""The jobs API's logic apart from HTTP: pages of a search, rescheduling through the queue."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diracx.core.exceptions import DiracxError
from diracx.core.job_search import JobActionResponse, JobSearchRequest
from diracx.db.jobs import JobDB
from diracx.routers.queue import JobQueue


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
    db: JobDB, request: JobSearchRequest, page: int, per_page: int
) -> SearchAnswer:
    result = await db.search(request, page, per_page)
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


async def reschedule_job(db: JobDB, queue: JobQueue, job_id: int, by: str) -> JobActionResponse:
    """Reschedule an ended job and, if it is Waiting, tell the workers (as a submission does)."""
    result, to_queue = await db.reschedule(job_id, by)
    await queue.enqueue(to_queue)
    return result
