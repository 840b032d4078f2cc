"""A VO's pipelines, newest first, a page at a time, with how far each one's jobs are.

Two statements per page whatever its size: the page's pipelines (an index walk of
``ix_pipelines_vo`` down from the cursor, stopped at the page's end; the state filter
is a correlated EXISTS, so it stops there too), then the stage counts of those
pipelines in one grouped query.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from sqlalchemy import ColumnElement, Connection, case, func, not_, select

from diracx.core.models import PipelinePage, PipelineState, PipelineSummary
from diracx.core.status import JobStatus
from diracx.db.engine import Engines
from diracx.db.schema import jobs, pipeline_stages, pipelines

S = JobStatus
BAD = (S.FAILED.value, S.KILLED.value)  # a pipeline with one of these failed
MAX_LIMIT = 500  # pipelines per page (the counts' IN list stays within SQLite's limits)


def _has_job(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """The pipeline of the outer query has a stage built by a job matching *conditions*."""
    return (
        select(pipeline_stages.c.job_id)
        .join(jobs, jobs.c.id == pipeline_stages.c.job_id)
        .where(pipeline_stages.c.pipeline_id == pipelines.c.id, *conditions)
        .exists()
    )


def state_condition(state: PipelineState) -> ColumnElement[bool]:
    """Pipelines in *state*, as ``PipelineDB.get_pipeline`` decides it from the jobs."""
    failed = _has_job(jobs.c.status.in_(BAD))
    unfinished = _has_job(jobs.c.status != S.DONE.value)
    if state == "Failed":
        return failed
    if state == "Done":
        return not_(unfinished)
    return unfinished & not_(failed)


def summary_state(counts: dict[str, int]) -> PipelineState:
    """The state of a pipeline whose stages are *counts* (cached, or job statuses)."""
    jobs_states = {s for s, n in counts.items() if n and s != "cached"}
    if jobs_states & set(BAD):
        return "Failed"
    if jobs_states <= {S.DONE.value}:
        return "Done"
    return "Running"


async def list_pipelines(
    engines: Engines,
    *,
    vo: str,
    limit: int,
    cursor: int | None = None,
    owner: str | None = None,
    state: PipelineState | None = None,
) -> PipelinePage:
    """The pipelines of *vo* older than *cursor* (an id; None: from the newest), at most
    *limit*, newest first; only *owner*'s, only those in *state*, if given."""

    def tx(conn: Connection) -> Any:
        query = select(pipelines.c.id, pipelines.c.owner, pipelines.c.created, pipelines.c.targets)
        query = query.where(pipelines.c.vo == vo)
        if cursor is not None:
            query = query.where(pipelines.c.id < cursor)
        if owner is not None:
            query = query.where(pipelines.c.owner == owner)
        if state is not None:
            query = query.where(state_condition(state))
        rows = conn.execute(query.order_by(pipelines.c.id.desc()).limit(limit + 1)).all()
        page = rows[:limit]
        counts: dict[int, dict[str, int]] = defaultdict(dict)
        if page:
            # cached: no job, or a job that found its result already built (early cutoff)
            shown = case(
                (pipeline_stages.c.cached_rref.is_not(None), "cached"), else_=jobs.c.status
            )
            grouped = conn.execute(
                select(pipeline_stages.c.pipeline_id, shown, func.count())
                .select_from(pipeline_stages)
                .outerjoin(jobs, jobs.c.id == pipeline_stages.c.job_id)
                .where(pipeline_stages.c.pipeline_id.in_([r.id for r in page]))
                .group_by(pipeline_stages.c.pipeline_id, shown)
            )
            for pipeline_id, status, n in grouped:
                counts[pipeline_id][status] = n
        return page, counts, len(rows) > limit

    page, counts, more = await engines.read(tx)
    summaries = [
        PipelineSummary(
            id=r.id,
            owner=r.owner,
            created=r.created,
            status=summary_state(counts[r.id]),
            target_count=len(json.loads(r.targets)),
            counts=dict(sorted(counts[r.id].items())),
        )
        for r in page
    ]
    return PipelinePage(pipelines=summaries, next_cursor=page[-1].id if more else None)
