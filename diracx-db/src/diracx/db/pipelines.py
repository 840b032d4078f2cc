"""PipelineDB: every state change of pipelines, jobs and realizations, one transaction each.

The database is the source of truth; the broker only delivers. Each method
that changes state does it in a single transaction, so a crash leaves either
the old state or the new one.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from diracx.core.canonical import canonical_json
from diracx.core.derivation import Derivation
from diracx.core.models import (
    JobEvent,
    JobInfo,
    PipelineEvents,
    PipelineInfo,
    RealizationInfo,
    StageInfo,
    StatusHistoryEntry,
)
from diracx.core.status import FINAL_STATUSES, LIVE_STATUSES, JobStatus
from diracx.db.engine import Engines
from diracx.db.schema import (
    derivations,
    job_edges,
    job_status_history,
    jobs,
    pipeline_stages,
    pipelines,
    realizations,
    workers,
)

S = JobStatus
# SQLite caps bound parameters per statement; IN lists are sent in chunks of this size.
CHUNK = 500
# Statuses in which a worker holds the job.
HELD = (S.MATCHED, S.RUNNING, S.COMPLETING)


def now() -> datetime:
    return datetime.now(UTC)


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


@dataclass(frozen=True)
class InputRealization:
    rref: str
    output: str


@dataclass(frozen=True)
class ClaimedJob:
    """A job a worker now holds, with everything needed to build it."""

    id: int
    dref: str
    derivation: Derivation
    attempt: int
    inputs: dict[str, InputRealization]  # derivation inputs (drv) by input name


@dataclass(frozen=True)
class BuildSuccess:
    job_id: int
    dref: str
    output: str
    context: dict[str, list[str]]
    rref: str
    log: str | None
    started: datetime
    finished: datetime
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildFailure:
    job_id: int
    reason: str
    log: str | None


@dataclass
class FinishOutcome:
    released: list[int] = field(default_factory=list)  # now Waiting: to be queued
    claimed: list[ClaimedJob] = field(default_factory=list)  # released and claimed by the caller


@dataclass
class SubmitOutcome:
    pipeline: PipelineInfo
    ready: list[int]  # jobs created Waiting: to be queued


class PipelineDB:
    """State changes and reads on the DiracX tables."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines
        self._dialect = engines.dialect_name

    @classmethod
    def from_url(cls, url: str) -> PipelineDB:
        return cls(Engines(url))

    async def close(self) -> None:
        await self.engines.dispose()

    async def ping(self) -> None:
        def tx(conn: Connection) -> Any:
            conn.exec_driver_sql("SELECT 1")

        await self.engines.read(tx)

    # -- helpers -------------------------------------------------------------------

    def _insert_ignore(self, table: Any) -> Any:
        dialect = postgresql if self._dialect == "postgresql" else sqlite
        return dialect.insert(table).on_conflict_do_nothing()

    def _history(
        self,
        conn: Connection,
        job_ids: Iterable[int],
        status: JobStatus,
        minor: str,
        source: str,
        ts: datetime,
        *,
        via: Sequence[tuple[JobStatus, str]] = (),
    ) -> None:
        """Record status changes; *via* lists statuses passed through on the way (in order)."""
        steps = [*via, (status, minor)]
        rows = [
            {"job_id": j, "status": st.value, "minor_status": m, "timestamp": ts, "source": source}
            for j in job_ids
            for st, m in steps
        ]
        if rows:
            conn.execute(insert(job_status_history), rows)

    def _set_status(
        self,
        conn: Connection,
        job_ids: Sequence[int],
        old: Sequence[JobStatus],
        new: JobStatus,
        minor: str,
        source: str,
        *,
        via: Sequence[tuple[JobStatus, str]] = (),
        **values: Any,
    ) -> list[int]:
        """Move the jobs that are in one of *old* to *new* (a conditional update); return them.

        *via* names statuses the jobs pass through in the same transaction: they are
        recorded in the history, not written to the jobs one after the other.
        """
        ts = now()
        changed: list[int] = []
        for part in chunks(job_ids):
            result = conn.execute(
                update(jobs)
                .where(jobs.c.id.in_(part), jobs.c.status.in_([s.value for s in old]))
                .values(status=new.value, minor_status=minor, updated=ts, **values)
                .returning(jobs.c.id)
            )
            changed.extend(r[0] for r in result)
        self._history(conn, changed, new, minor, source, ts, via=via)
        return changed

    # -- submission ----------------------------------------------------------------

    async def submit(
        self, owner: str, ordered: Sequence[tuple[str, Derivation]], targets: Sequence[str]
    ) -> SubmitOutcome:
        """Record a pipeline whole: reuse what is realized, join live jobs, create the rest.

        *ordered* lists the derivations inputs first (``plan_order``). Runs as one
        transaction: the pipeline is recorded whole or not at all.
        """
        ts = now()
        drefs = [d for d, _ in ordered]

        def tx(conn: Connection) -> Any:
            pipeline_id = (
                conn.execute(
                    insert(pipelines)
                    .values(owner=owner, created=ts, targets=json.dumps(list(targets)))
                    .returning(pipelines.c.id)
                )
            ).scalar_one()
            conn.execute(
                self._insert_ignore(derivations),
                [
                    {
                        "dref": d,
                        "name": drv.name,
                        "body": canonical_json(drv.body()).decode(),
                        "created": ts,
                    }
                    for d, drv in ordered
                ],
            )
            realized = self._chosen_realizations(conn, drefs)
            live: dict[str, tuple[int, str]] = {}  # dref -> (job id, status) of a live job
            for part in chunks(drefs):
                rows = conn.execute(
                    select(jobs.c.dref, jobs.c.id, jobs.c.status)
                    .where(
                        jobs.c.dref.in_(part), jobs.c.status.in_([s.value for s in LIVE_STATUSES])
                    )
                    .order_by(jobs.c.id)
                    .with_for_update()
                )
                for dref, job_id, status in rows:
                    live.setdefault(dref, (job_id, status))

            stage_job: dict[str, int] = {}  # dref -> the job building it for this pipeline
            new_jobs: list[dict[str, Any]] = []
            for dref, drv in ordered:
                if dref in realized or dref in live:
                    continue
                pending = {d for d in drv.input_drefs().values() if d not in realized}
                new_jobs.append(
                    {
                        "pipeline_id": pipeline_id,
                        "dref": dref,
                        "name": drv.name,
                        "status": (S.CHECKING if pending else S.WAITING).value,
                        "minor_status": "Waiting for inputs" if pending else "Ready",
                        "attempt": 1,
                        "pending_inputs": len(pending),
                        "created": ts,
                        "updated": ts,
                        "queue": drv.scheduling.queue,
                        "cpus": drv.scheduling.cpus,
                        "memory_mb": drv.scheduling.memory_mb,
                        "gpus": drv.scheduling.gpus,
                        "retries": drv.scheduling.retries,
                        "retry_backoff": drv.scheduling.retry_backoff,
                    }
                )
            if new_jobs:
                # A plain executemany, then one query for the ids: RETURNING in an
                # executemany runs row by row on SQLite.
                conn.execute(insert(jobs), new_jobs)
                result = conn.execute(
                    select(jobs.c.dref, jobs.c.id).where(jobs.c.pipeline_id == pipeline_id)
                )
                stage_job.update({dref: job_id for dref, job_id in result})
            stage_job.update({dref: job_id for dref, (job_id, _) in live.items()})

            edges = [
                {"job_id": stage_job[dref], "input_job_id": stage_job[dep]}
                for dref, drv in ordered
                if dref not in realized and dref not in live
                for dep in set(drv.input_drefs().values())
                if dep not in realized
            ]
            if edges:
                conn.execute(insert(job_edges), edges)
            created = [(row["dref"], stage_job[row["dref"]], row["status"]) for row in new_jobs]
            history = [
                row
                for _, job_id, status in created
                for row in (
                    (job_id, S.RECEIVED, "Job accepted"),
                    (
                        job_id,
                        JobStatus(status),
                        "Ready" if status == S.WAITING else "Waiting for inputs",
                    ),
                )
            ]
            if history:
                conn.execute(
                    insert(job_status_history),
                    [
                        {
                            "job_id": j,
                            "status": s.value,
                            "minor_status": m,
                            "timestamp": ts,
                            "source": "submit",
                        }
                        for j, s, m in history
                    ],
                )
            conn.execute(
                insert(pipeline_stages),
                [
                    {
                        "pipeline_id": pipeline_id,
                        "dref": dref,
                        "job_id": stage_job.get(dref),
                        "cached_rref": realized[dref].rref if dref in realized else None,
                    }
                    for dref in drefs
                ],
            )
            info = self._pipeline_info(conn, pipeline_id)
            return info, created

        info, created = await self.engines.write(tx)
        assert info is not None
        ready = [job_id for _, job_id, status in created if status == S.WAITING]
        return SubmitOutcome(pipeline=info, ready=ready)

    def _chosen_realizations(
        self, conn: Connection, drefs: Sequence[str]
    ) -> dict[str, InputRealization]:
        """The realization the matcher picks for each realized derivation (``only``: the first)."""
        chosen: dict[str, InputRealization] = {}
        for part in chunks(list(drefs)):
            rows = conn.execute(
                select(realizations.c.dref, realizations.c.rref, realizations.c.output)
                .where(realizations.c.dref.in_(part))
                .order_by(realizations.c.created, realizations.c.rref)
            )
            for dref, rref, output in rows:
                chosen.setdefault(dref, InputRealization(rref, output))
        return chosen

    # -- workers: claim, run, finish ------------------------------------------------

    async def claim(
        self, job_ids: Sequence[int], worker: str, *, start: bool = False, source: str = "worker"
    ) -> list[ClaimedJob]:
        """Waiting -> Matched for the jobs no other worker took; exactly one worker wins each.

        With *start* the won jobs go on to Running in the same transaction.
        """

        def tx(conn: Connection) -> Any:
            return self._claim(conn, job_ids, worker, start=start, source=source)

        return await self.engines.write(tx)

    def _claim(
        self,
        conn: Connection,
        job_ids: Sequence[int],
        worker: str,
        *,
        start: bool,
        source: str,
    ) -> list[ClaimedJob]:
        matched = f"Matched by {worker}"
        if start:
            won = self._set_status(
                conn,
                job_ids,
                [S.WAITING],
                S.RUNNING,
                "Building",
                source,
                via=[(S.MATCHED, matched)],
                worker=worker,
                heartbeat=now(),
            )
        else:
            won = self._set_status(
                conn, job_ids, [S.WAITING], S.MATCHED, matched, source, worker=worker
            )
        return self._claimed_jobs(conn, won)

    def _claimed_jobs(self, conn: Connection, job_ids: Sequence[int]) -> list[ClaimedJob]:
        if not job_ids:
            return []
        rows: list[Any] = []
        for part in chunks(job_ids):
            rows.extend(
                conn.execute(
                    select(jobs.c.id, jobs.c.dref, jobs.c.attempt, derivations.c.body)
                    .join(derivations, derivations.c.dref == jobs.c.dref)
                    .where(jobs.c.id.in_(part))
                )
            )
        parsed = {row.id: (row, Derivation.model_validate_json(row.body)) for row in rows}
        needed = {d for _, drv in parsed.values() for d in drv.input_drefs().values()}
        chosen = self._chosen_realizations(conn, sorted(needed))
        claimed = []
        for job_id in job_ids:
            row, drv = parsed[job_id]
            inputs = {name: chosen[d] for name, d in drv.input_drefs().items() if d in chosen}
            claimed.append(ClaimedJob(row.id, row.dref, drv, row.attempt, inputs))
        return claimed

    async def finish(
        self,
        worker: str,
        successes: Sequence[BuildSuccess],
        failures: Sequence[BuildFailure],
        *,
        claim_released: int = 0,
    ) -> FinishOutcome:
        """Record results: realizations, Done/Failed, release or fail dependents. One transaction.

        Up to *claim_released* of the dependents this releases are claimed for
        *worker* in the same transaction, so it can run them without a round trip
        through the broker; the others are returned to be queued.
        """
        ts = now()
        outcome = FinishOutcome()

        def tx(conn: Connection) -> Any:
            if successes:
                conn.execute(
                    self._insert_ignore(realizations),
                    [
                        {
                            "rref": s.rref,
                            "dref": s.dref,
                            "output": s.output,
                            "context": json.dumps(s.context, sort_keys=True),
                            "metrics": json.dumps(s.metrics, sort_keys=True),
                            "log": s.log,
                            "job_id": s.job_id,
                            "started": s.started,
                            "finished": s.finished,
                            "created": ts,
                        }
                        for s in successes
                    ],
                )
                done_ids = self._end_jobs(
                    conn, [(x.job_id, S.DONE, "Built", x.rref, x.log) for x in successes], ts
                )
                outcome.released = self._release_dependents(conn, done_ids, ts)
            if failures:
                self._fail(conn, failures, ts)
            if claim_released and outcome.released:
                mine = outcome.released[:claim_released]
                outcome.claimed = self._claim(conn, mine, worker, start=True, source="worker")
                won = {c.id for c in outcome.claimed}
                outcome.released = [j for j in outcome.released if j not in won]

        await self.engines.write(tx)
        return outcome

    def _release_dependents(self, conn: Connection, done: Sequence[int], ts: datetime) -> list[int]:
        counts: Counter[int] = Counter()
        for part in chunks(done):
            rows = conn.execute(
                select(job_edges.c.job_id).where(job_edges.c.input_job_id.in_(part))
            )
            counts.update(r[0] for r in rows)
        if not counts:
            return []
        by_count: dict[int, list[int]] = defaultdict(list)
        for job_id, n in counts.items():
            by_count[n].append(job_id)
        for n, ids in by_count.items():
            for part in chunks(ids):
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id.in_(part), jobs.c.status == S.CHECKING.value)
                    .values(pending_inputs=jobs.c.pending_inputs - n)
                )
        released: list[int] = []
        for part in chunks(sorted(counts)):
            result = conn.execute(
                update(jobs)
                .where(
                    jobs.c.id.in_(part),
                    jobs.c.status == S.CHECKING.value,
                    jobs.c.pending_inputs <= 0,
                )
                .values(status=S.WAITING.value, minor_status="Inputs ready", updated=ts)
                .returning(jobs.c.id)
            )
            released.extend(r[0] for r in result)
        self._history(conn, released, S.WAITING, "Inputs ready", "worker", ts)
        return sorted(released)

    def _held(self, conn: Connection, job_ids: Sequence[int]) -> set[int]:
        """The jobs among *job_ids* that a worker still holds (locked until commit)."""
        held: set[int] = set()
        for part in chunks(job_ids):
            rows = conn.execute(
                select(jobs.c.id)
                .where(jobs.c.id.in_(part), jobs.c.status.in_([x.value for x in HELD]))
                .with_for_update()
            )
            held.update(r[0] for r in rows)
        return held

    def _end_jobs(
        self,
        conn: Connection,
        ends: Sequence[tuple[int, JobStatus, str, str | None, str | None]],
        ts: datetime,
    ) -> list[int]:
        """Give held jobs their final status: ``(job id, Done or Failed, minor status, rref,
        log)``. A job no longer held (killed meanwhile) keeps its status. Returns the ended."""
        held = self._held(conn, [e[0] for e in ends])
        ended = [e[0] for e in ends if e[0] in held]
        rows: list[dict[str, Any]] = [
            {"_id": job_id, "_status": st.value, "_minor": minor[:512], "_rref": rref, "_log": log}
            for job_id, st, minor, rref, log in ends
            if job_id in held
        ]
        if rows:
            conn.execute(
                update(jobs)
                .where(jobs.c.id == bindparam("_id"))
                .values(
                    status=bindparam("_status"),
                    minor_status=bindparam("_minor"),
                    updated=ts,
                    rref=bindparam("_rref"),
                    log=bindparam("_log"),
                ),
                rows,
            )
            conn.execute(
                insert(job_status_history),
                [
                    {
                        "job_id": r["_id"],
                        "status": r["_status"],
                        "minor_status": r["_minor"],
                        "timestamp": ts,
                        "source": "worker",
                    }
                    for r in rows
                ],
            )
        return ended

    def _fail(self, conn: Connection, failures: Sequence[BuildFailure], ts: datetime) -> None:
        failed = self._end_jobs(
            conn, [(f.job_id, S.FAILED, f.reason, None, f.log) for f in failures], ts
        )
        self._fail_dependents(conn, failed, ts)

    def _fail_dependents(self, conn: Connection, failed: Sequence[int], ts: datetime) -> None:
        """Dependents of failed jobs never run: Failed, naming the input that failed."""
        frontier = list(failed)
        while frontier:
            rows: list[Any] = []
            for part in chunks(frontier):
                rows.extend(
                    conn.execute(
                        select(job_edges.c.job_id, jobs.c.name)
                        .join(jobs, jobs.c.id == job_edges.c.input_job_id)
                        .where(job_edges.c.input_job_id.in_(part))
                    )
                )
            by_reason: dict[str, list[int]] = defaultdict(list)
            for job_id, input_name in rows:
                by_reason[f"Input {input_name!r} failed"].append(job_id)
            frontier = []
            for reason, ids in by_reason.items():
                frontier.extend(
                    self._set_status(
                        conn, sorted(set(ids)), [S.CHECKING, S.WAITING], S.FAILED, reason, "worker"
                    )
                )

    async def heartbeat(self, job_ids: Sequence[int]) -> None:
        def tx(conn: Connection) -> Any:
            for part in chunks(job_ids):
                conn.execute(update(jobs).where(jobs.c.id.in_(part)).values(heartbeat=now()))

        await self.engines.write(tx)

    # -- workers registry and recovery -----------------------------------------------

    async def register_worker(self, worker: str, hostname: str, pid: int) -> None:
        ts = now()

        def tx(conn: Connection) -> Any:
            conn.execute(
                self._insert_ignore(workers),
                [{"id": worker, "hostname": hostname, "pid": pid, "started": ts, "last_seen": ts}],
            )

        await self.engines.write(tx)

    async def reschedule_orphans(
        self, live_workers: Iterable[str], source: str = "engine"
    ) -> list[int]:
        """Jobs held by a worker that is gone: Rescheduled, then Waiting again (attempt + 1)."""
        live = list(live_workers)

        def tx(conn: Connection) -> Any:
            query = select(jobs.c.id).where(jobs.c.status.in_([s.value for s in HELD]))
            if live:
                query = query.where(jobs.c.worker.not_in(live))
            orphans = [r[0] for r in conn.execute(query)]
            held = [s for s in HELD]
            moved = self._set_status(conn, orphans, held, S.RESCHEDULED, "Worker lost", source)
            for part in chunks(moved):
                conn.execute(
                    update(jobs)
                    .where(jobs.c.id.in_(part))
                    .values(attempt=jobs.c.attempt + 1, worker=None)
                )
            return self._set_status(conn, moved, [S.RESCHEDULED], S.WAITING, "Rescheduled", source)

        return await self.engines.write(tx)

    async def waiting_jobs(self) -> list[int]:
        def tx(conn: Connection) -> Any:
            rows = conn.execute(
                select(jobs.c.id).where(jobs.c.status == S.WAITING.value).order_by(jobs.c.id)
            )
            return [r[0] for r in rows]

        return await self.engines.read(tx)

    async def live_job_count(self) -> int:
        def tx(conn: Connection) -> Any:
            return (
                conn.execute(
                    select(func.count())
                    .select_from(jobs)
                    .where(jobs.c.status.in_([s.value for s in LIVE_STATUSES]))
                )
            ).scalar_one()

        return await self.engines.read(tx)

    # -- reads -------------------------------------------------------------------

    async def get_pipeline(self, pipeline_id: int) -> PipelineInfo | None:
        def tx(conn: Connection) -> Any:
            return self._pipeline_info(conn, pipeline_id)

        return await self.engines.read(tx)

    def _pipeline_info(self, conn: Connection, pipeline_id: int) -> PipelineInfo | None:
        row = (conn.execute(select(pipelines).where(pipelines.c.id == pipeline_id))).first()
        if row is None:
            return None
        result = conn.execute(
            select(
                pipeline_stages.c.dref,
                pipeline_stages.c.job_id,
                pipeline_stages.c.cached_rref,
                derivations.c.name,
                jobs.c.status,
                jobs.c.minor_status,
                jobs.c.rref,
                realizations.c.output,
            )
            .join(derivations, derivations.c.dref == pipeline_stages.c.dref)
            .outerjoin(jobs, jobs.c.id == pipeline_stages.c.job_id)
            .outerjoin(
                realizations,
                realizations.c.rref == func.coalesce(pipeline_stages.c.cached_rref, jobs.c.rref),
            )
            .where(pipeline_stages.c.pipeline_id == pipeline_id)
        )
        stages = [
            StageInfo(
                dref=r.dref,
                name=r.name,
                cached=r.job_id is None,
                job_id=r.job_id,
                status=r.status,
                minor_status=r.minor_status,
                rref=r.cached_rref or r.rref,
                output=r.output,
            )
            for r in result
        ]
        counts = Counter("cached" if s.cached else str(s.status) for s in stages)
        statuses = {s.status for s in stages if not s.cached}
        if statuses & {S.FAILED, S.KILLED}:
            status = "Failed"
        elif statuses <= {S.DONE}:
            status = "Done"
        else:
            status = "Running"
        return PipelineInfo(
            id=row.id,
            owner=row.owner,
            created=row.created,
            targets=json.loads(row.targets),
            status=status,
            counts=dict(counts),
            stages=stages,
        )

    async def pipeline_events(
        self, pipeline_id: int, after: int = 0, limit: int = 5000
    ) -> PipelineEvents | None:
        """Status changes of the pipeline's jobs since event *after*, and whether it is finished."""

        def tx(conn: Connection) -> Any:
            exists = (
                conn.execute(select(pipelines.c.id).where(pipelines.c.id == pipeline_id))
            ).first()
            if exists is None:
                return None
            rows = conn.execute(
                select(
                    job_status_history.c.id,
                    job_status_history.c.job_id,
                    jobs.c.dref,
                    jobs.c.name,
                    job_status_history.c.status,
                    job_status_history.c.minor_status,
                    job_status_history.c.timestamp,
                )
                .join(pipeline_stages, pipeline_stages.c.job_id == job_status_history.c.job_id)
                .join(jobs, jobs.c.id == job_status_history.c.job_id)
                .where(
                    pipeline_stages.c.pipeline_id == pipeline_id, job_status_history.c.id > after
                )
                .order_by(job_status_history.c.id)
                .limit(limit)
            )
            events = [
                JobEvent(
                    id=r.id,
                    job_id=r.job_id,
                    dref=r.dref,
                    name=r.name,
                    status=r.status,
                    minor_status=r.minor_status,
                    timestamp=r.timestamp,
                )
                for r in rows
            ]
            unfinished = (
                conn.execute(
                    select(func.count())
                    .select_from(pipeline_stages)
                    .join(jobs, jobs.c.id == pipeline_stages.c.job_id)
                    .where(
                        pipeline_stages.c.pipeline_id == pipeline_id,
                        jobs.c.status.not_in([s.value for s in FINAL_STATUSES]),
                    )
                )
            ).scalar_one()
            return events, unfinished

        found = await self.engines.read(tx)
        if found is None:
            return None
        events, unfinished = found
        last = events[-1].id if events else after
        return PipelineEvents(
            events=events, last_event_id=last, finished=unfinished == 0 and len(events) < limit
        )

    async def last_event_id(self) -> int:
        """The id of the newest status change of any job (0 if none): cheap to poll."""

        def tx(conn: Connection) -> Any:
            return (conn.execute(select(func.max(job_status_history.c.id)))).scalar() or 0

        return await self.engines.read(tx)

    async def get_job(self, job_id: int) -> JobInfo | None:
        def tx(conn: Connection) -> Any:
            row = (conn.execute(select(jobs).where(jobs.c.id == job_id))).first()
            if row is None:
                return None
            history = conn.execute(
                select(job_status_history)
                .where(job_status_history.c.job_id == job_id)
                .order_by(job_status_history.c.id)
            )
            return JobInfo(
                id=row.id,
                pipeline_id=row.pipeline_id,
                dref=row.dref,
                name=row.name,
                status=row.status,
                minor_status=row.minor_status,
                worker=row.worker,
                attempt=row.attempt,
                created=row.created,
                updated=row.updated,
                rref=row.rref,
                log=row.log,
                history=[
                    StatusHistoryEntry(
                        status=h.status,
                        minor_status=h.minor_status,
                        timestamp=h.timestamp,
                        source=h.source,
                    )
                    for h in history
                ],
            )

        return await self.engines.read(tx)

    async def get_realization(self, rref: str) -> RealizationInfo | None:
        def tx(conn: Connection) -> Any:
            rows = self._realization_rows(conn, realizations.c.rref == rref)
            return rows

        rows = await self.engines.read(tx)
        return rows[0] if rows else None

    async def realizations_of(self, dref: str) -> list[RealizationInfo]:
        def tx(conn: Connection) -> Any:
            return self._realization_rows(conn, realizations.c.dref == dref)

        return await self.engines.read(tx)

    def _realization_rows(self, conn: Connection, where: Any) -> list[RealizationInfo]:
        rows = conn.execute(
            select(realizations, derivations.c.name)
            .join(derivations, derivations.c.dref == realizations.c.dref)
            .where(where)
            .order_by(realizations.c.created, realizations.c.rref)
        )
        return [
            RealizationInfo(
                rref=r.rref,
                dref=r.dref,
                name=r.name,
                output=r.output,
                context=json.loads(r.context),
                log=r.log,
                metrics=json.loads(r.metrics),
                job_id=r.job_id,
                started=r.started,
                finished=r.finished,
                created=r.created,
            )
            for r in rows
        ]


__all__ = [
    "BuildFailure",
    "BuildSuccess",
    "ClaimedJob",
    "FinishOutcome",
    "InputRealization",
    "PipelineDB",
    "SubmitOutcome",
]
