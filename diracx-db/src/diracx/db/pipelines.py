"""PipelineDB: every state change of pipelines, jobs and realizations, one transaction each.

The database is the source of truth; the broker only delivers. Each method
that changes state does it in a single transaction, so a crash leaves either
the old state or the new one.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from diracx.core.broker import (
    UNSERVED_PREFIX,
    WORKER_STALE_SECONDS,
    QueuedJob,
    WorkerCapacity,
    unserved_reason,
)
from diracx.core.config import LOCAL_VO, VO_ADMIN
from diracx.core.derivation import Derivation, Matcher, Scheduling
from diracx.core.exceptions import ConflictError, ForbiddenError, ObjectNotFoundError
from diracx.core.matching import (
    Candidate,
    PipelinePlan,
    StagePlan,
    candidate,
    choose,
    context_of,
    in_context,
    plan,
    to_pipeline_plan,
)
from diracx.core.models import (
    JobEvent,
    JobInfo,
    PipelineEvents,
    PipelineInfo,
    RealizationInfo,
    StatusHistoryEntry,
)
from diracx.core.settings import ServiceSettings
from diracx.core.status import FINAL_STATUSES, LIVE_STATUSES, JobStatus
from diracx.db.engine import Engines
from diracx.db.schema import (
    derivations,
    job_edges,
    job_secrets,
    job_status_history,
    jobs,
    pipeline_stages,
    pipelines,
    realization_vos,
    realizations,
    workers,
)
from diracx.db.sql import chunks, insert_ignore
from diracx.db.visibility import (
    claim_blobs,
    claim_realizations,
    visible_blobs,
    vo_store_bytes,
)

S = JobStatus
# Statuses in which a worker holds the job.
HELD = (S.MATCHED, S.RUNNING, S.COMPLETING)


def now() -> datetime:
    return datetime.now(UTC)


def realization_info(r: Any) -> RealizationInfo:
    """A realization from a row of ``realizations`` joined with its derivation's name."""
    return RealizationInfo(
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


def retries_left(row: Any) -> bool:
    return bool(row.failures < row.retries)


@dataclass(frozen=True)
class Actor:
    """Who reads or acts: a user sees only the objects of *vo*, and acts only on the jobs
    and pipelines they own (*sub*), or on all of the VO's with *vo_admin* (``VOAdmin``)."""

    vo: str
    sub: str
    vo_admin: bool = False

    def may_act_on(self, owner: str) -> bool:
        return self.vo_admin or owner == self.sub

    def refuse(self, what: str, owner: str, verb: str) -> ForbiddenError:
        """The 403 for acting on *what* (``job 12``), which another user of the VO owns."""
        return ForbiddenError(
            f"{what} belongs to user {owner!r}: only its owner or a user with the "
            f"{VO_ADMIN} property may {verb} it"
        )


# Called in the submission's transaction with (the VO's jobs not in a final status, the
# jobs the submission creates); raises to refuse it (the running_jobs quota).
Admit = Callable[[int, int], None]


def lock_vo(conn: Connection, vo: str) -> None:
    """Serialize the transactions that start jobs of a VO whose running jobs are limited:
    one counts the VO's jobs and adds its own before the next one counts.

    A PostgreSQL advisory lock (two 32-bit keys: a space apart from the DRef locks),
    taken before any other. SQLite runs one write transaction at a time already.
    """
    if conn.dialect.name != "postgresql":
        return
    key = int.from_bytes(hashlib.sha256(vo.encode()).digest()[:4], "big", signed=True)
    conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": 0x766F, "b": key})


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
    # the values of the secrets the build needs, sealed (diracx.core.secrets.SecretBox)
    secrets: str | None = field(default=None, repr=False)
    # inputs whose matcher may pick several realizations: all it chose, in its order
    # (materialized at inputs/<name>/<k>/); ``inputs`` holds the first of them
    choices: dict[str, tuple[InputRealization, ...]] = field(default_factory=dict)
    # inputs whose matcher failed (an ``only`` with two realizations...): the build fails
    input_errors: dict[str, str] = field(default_factory=dict)

    def context(self) -> dict[str, list[str]]:
        """What the build's realization records: input name -> the RRefs it was built from."""
        return {
            name: sorted(r.rref for r in self.choices.get(name, (first,)))
            for name, first in self.inputs.items()
        }

    @property
    def cpus(self) -> int:
        """The worker slots the build takes (the derivation's scheduling, as submitted)."""
        return self.derivation.scheduling.cpus


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
    # the derivation's matcher: a some(n) job builds again until n realizations exist
    matcher: Matcher | None = None
    # digest -> size of every blob of the output closure (the tree's manifest, its files)
    # and of the log: the job's VO gets a claim on each (it may read them, they count
    # against its store_bytes quota)
    blobs: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildFailure:
    job_id: int
    reason: str
    log: str | None
    blobs: Mapping[str, int] = field(default_factory=dict)  # the log's digest -> size


@dataclass
class FinishOutcome:
    released: list[int] = field(default_factory=list)  # now Waiting: to be queued
    claimed: list[ClaimedJob] = field(default_factory=list)  # released and claimed by the caller
    queues: dict[int, str] = field(default_factory=dict)  # the queue of each released job

    def to_queue(self) -> list[QueuedJob]:
        """The released jobs with the queue each one's message goes to."""
        return [QueuedJob(j, self.queues[j]) for j in self.released]


@dataclass
class ClaimOutcome:
    """What a claim did with the ids it was given."""

    claimed: list[ClaimedJob] = field(default_factory=list)  # now held by the worker
    # Waiting jobs the worker cannot serve but another live worker can: to be queued again
    passed: list[QueuedJob] = field(default_factory=list)
    # ids not looked at: the claimed jobs took the whole budget
    rest: list[int] = field(default_factory=list)


@dataclass
class KillOutcome:
    killed: list[int] = field(default_factory=list)  # now Killed
    failed: list[int] = field(default_factory=list)  # dependents that failed because of them
    # live jobs of the pipeline left alone: another user's (joined at submission), which
    # the actor may not kill
    spared: list[int] = field(default_factory=list)


@dataclass
class StallOutcome:
    """What ``stall_lost`` did with the jobs of lost workers."""

    rescheduled: list[int] = field(default_factory=list)  # Waiting again (perhaps after a backoff)
    failed: list[int] = field(default_factory=list)  # past the reschedule limit, with dependents
    due: list[QueuedJob] = field(default_factory=list)  # rescheduled and due now: to be queued


@dataclass
class SubmitOutcome:
    pipeline: PipelineInfo
    ready: list[int]  # jobs created Waiting: to be queued
    queues: dict[int, str] = field(default_factory=dict)  # the queue of each ready job

    def to_queue(self) -> list[QueuedJob]:
        """The ready jobs with the queue each one's message goes to."""
        return [QueuedJob(j, self.queues[j]) for j in self.ready]


def _capacity_of(row: Any) -> WorkerCapacity:
    """A workers row's capacity (columns queues, slots, memory_mb, gpus)."""
    return WorkerCapacity(
        queues=tuple(json.loads(row.queues)),
        slots=row.slots,
        memory_mb=row.memory_mb,
        gpus=row.gpus,
    )


def _with_scheduling(row: Any) -> Derivation:
    """The derivation of a jobs row (joined with its body), with the scheduling it was
    submitted with: the stored body is what was hashed, which leaves scheduling out."""
    drv = Derivation.model_validate_json(row.body)
    scheduling = Scheduling(
        queue=row.queue,
        cpus=row.cpus,
        memory_mb=row.memory_mb,
        gpus=row.gpus,
        retries=row.retries,
        retry_backoff=row.retry_backoff,
    )
    update: dict[str, Any] = {"scheduling": scheduling}
    extra = getattr(row, "builder_extra", None)
    if extra:  # builder fields left out of the DRef (cache volumes...), as submitted
        update["builder"] = {**drv.builder, **json.loads(extra)}
    return drv.model_copy(update=update)


class PipelineDB:
    """State changes and reads on the DiracX tables."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines
        self._dialect = engines.dialect_name
        # what each worker declared: it never changes once the worker registered
        self._capacities: dict[str, WorkerCapacity] = {}

    @classmethod
    def from_url(cls, url: str, **pool: int) -> PipelineDB:
        """On the database at *url*; *pool*: ``pool_size``, ``max_overflow``,
        ``pool_recycle`` (PostgreSQL only)."""
        return cls(Engines(url, **pool))

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> PipelineDB:
        """On the configured database, with the configured connection pool."""
        return cls.from_url(
            settings.resolved_db_url(),
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_recycle=settings.db_pool_recycle,
        )

    async def close(self) -> None:
        await self.engines.dispose()

    async def ping(self) -> None:
        def tx(conn: Connection) -> Any:
            conn.exec_driver_sql("SELECT 1")

        await self.engines.read(tx)

    # -- helpers -------------------------------------------------------------------

    def _insert_ignore(self, table: Any) -> Any:
        return insert_ignore(self._dialect, table)

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
        if new in FINAL_STATUSES:
            self._drop_secrets(conn, changed)
        return changed

    def _drop_secrets(self, conn: Connection, job_ids: Sequence[int]) -> None:
        """A job that has ended needs its secrets no more: they go at once."""
        for part in chunks(job_ids):
            conn.execute(delete(job_secrets).where(job_secrets.c.job_id.in_(part)))

    # -- submission ----------------------------------------------------------------

    async def submit(
        self,
        owner: str,
        ordered: Sequence[tuple[str, Derivation]],
        targets: Sequence[str],
        *,
        vo: str = LOCAL_VO,
        extras: Mapping[str, Mapping[str, Any]] | None = None,
        secrets: Mapping[str, str] | None = None,
        force: Iterable[str] = (),
        admit: Admit | None = None,
    ) -> SubmitOutcome:
        """Record a pipeline whole: reuse what is realized, join live jobs, create the rest.

        *ordered* lists the derivations inputs first (``plan_order``). Runs as one
        transaction: the pipeline is recorded whole or not at all. The pipeline and the
        jobs it creates belong to *owner* in *vo*. *extras* (DRef -> builder fields left
        out of the DRef) and *secrets* (DRef -> sealed secret values) go with the jobs this
        submission creates. Each derivation's matcher decides (``diracx.core.matching.plan``)
        among the realizations *vo* has a claim on: reused, joined (a live job of *vo*
        builds it) or built; *force* (DRefs) are built even if their matcher is satisfied.
        A matcher in error (``only`` with two realizations...) is a ConflictError: nothing
        is recorded. *admit*, if given, is called with the VO's jobs not in a final status
        and the number of jobs this submission creates, and may raise to refuse it (the
        submissions of the VO are then serialized, so that two cannot both pass it).
        """
        forced = frozenset(force)
        extras = extras or {}
        secrets = secrets or {}
        ts = now()
        drefs = [d for d, _ in ordered]

        def tx(conn: Connection) -> Any:
            if admit is not None:
                lock_vo(conn, vo)  # before the DRef locks (see _plan): always in this order
            pipeline_id = (
                conn.execute(
                    insert(pipelines)
                    .values(owner=owner, vo=vo, created=ts, targets=json.dumps(list(targets)))
                    .returning(pipelines.c.id)
                )
            ).scalar_one()
            # reuse, join (a live job, locked) or build each stage: see _plan
            plans = self._plan(conn, ordered, forced, vo, lock=True)
            errors = [plans[d].reason for d, _ in ordered if plans[d].action == "error"]
            if errors:  # a matcher that cannot choose: nothing is recorded
                raise ConflictError(errors[0])
            # A derivation whose own realizations were chosen is stored (they refer to
            # it; exact's are another derivation's): only the others are looked up.
            self._record_derivations(
                conn,
                [
                    (d, drv)
                    for d, drv in ordered
                    if not plans[d].chosen or drv.matcher.kind == "exact"
                ],
                ts,
            )
            # dref -> the realization a reused stage shows (the first its matcher chose)
            realized = {d: p.chosen[0] for d, p in plans.items() if p.action == "reuse"}
            live = {d: p.job_id for d, p in plans.items() if p.action == "join"}

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
                        "vo": vo,
                        "owner": owner,
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
                        "builder_extra": (
                            json.dumps(extras[dref], sort_keys=True) if extras.get(dref) else None
                        ),
                        "forced": dref in forced,
                    }
                )
            if admit is not None:
                admit(self._running_jobs(conn, vo), len(new_jobs))
            if new_jobs:
                # A plain executemany, then one query for the ids: RETURNING in an
                # executemany runs row by row on SQLite.
                conn.execute(insert(jobs), new_jobs)
                result = conn.execute(
                    select(jobs.c.dref, jobs.c.id).where(jobs.c.pipeline_id == pipeline_id)
                )
                stage_job.update({dref: job_id for dref, job_id in result})
            stage_job.update({dref: job_id for dref, job_id in live.items() if job_id is not None})

            edges = [
                {"job_id": stage_job[dref], "input_job_id": stage_job[dep]}
                for dref, drv in ordered
                if dref not in realized and dref not in live
                for dep in set(drv.input_drefs().values())
                if dep not in realized
            ]
            if edges:
                conn.execute(insert(job_edges), edges)
            sealed = [
                {"job_id": stage_job[row["dref"]], "sealed": secrets[row["dref"]]}
                for row in new_jobs
                if row["dref"] in secrets
            ]
            if sealed:
                conn.execute(insert(job_secrets), sealed)
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
            shown = {d: (drv.name, realized[d]) for d, drv in ordered if d in realized}
            info = self._pipeline_info(conn, pipeline_id, reused=shown)
            return info, created

        info, created = await self.engines.write(tx)
        assert info is not None
        scheduling = {dref: drv.scheduling for dref, drv in ordered}
        ready = [job_id for _, job_id, status in created if status == S.WAITING]
        queues = {j: scheduling[d].queue for d, j, status in created if status == S.WAITING}
        return SubmitOutcome(pipeline=info, ready=ready, queues=queues)

    def _record_derivations(
        self, conn: Connection, ordered: Sequence[tuple[str, Derivation]], ts: datetime
    ) -> None:
        """Store the derivations not stored yet. Their rows are never changed nor removed
        (garbage collection keeps them): the ones found need no write, which is most of
        them when a pipeline runs again."""
        known: set[str] = set()
        for part in chunks([d for d, _ in ordered]):
            rows = conn.execute(select(derivations.c.dref).where(derivations.c.dref.in_(part)))
            known.update(dref for (dref,) in rows)
        new = [
            {"dref": d, "name": drv.name, "body": drv.canonical_body().decode(), "created": ts}
            for d, drv in ordered
            if d not in known
        ]
        if new:  # one a concurrent submission stored meanwhile is left as it is
            conn.execute(self._insert_ignore(derivations), new)

    async def plan(
        self,
        ordered: Sequence[tuple[str, Derivation]],
        force: Iterable[str] = (),
        *,
        vo: str = LOCAL_VO,
    ) -> PipelinePlan:
        """What ``submit`` would do with each stage for *vo*, and why; records nothing
        (a dry run)."""

        def tx(conn: Connection) -> Any:
            return self._plan(conn, ordered, frozenset(force), vo, lock=False)

        plans = await self.engines.read(tx)
        return to_pipeline_plan(ordered, plans)

    def _plan(
        self,
        conn: Connection,
        ordered: Sequence[tuple[str, Derivation]],
        forced: frozenset[str],
        vo: str,
        *,
        lock: bool,
    ) -> dict[str, StagePlan]:
        """Each stage's plan for *vo*: only its realizations are reused, only its live
        jobs joined (another VO builds the same derivation again: it has no claim on what
        that one built, and a deterministic rebuild then gives it one)."""
        drefs = [d for d, _ in ordered]
        if lock and conn.dialect.name == "postgresql":
            # Two submissions of the same new derivation at once would each find no
            # live job (there is no row to lock yet) and both create one: serialize
            # them on a lock per DRef, taken in one order so they cannot deadlock.
            # (SQLite runs every write transaction of a process on one thread, and
            # takes the database lock up front: nothing to do there.)
            keys = sorted(
                {int.from_bytes(bytes.fromhex(d[:16]), "big", signed=True) for d in drefs}
            )
            conn.execute(
                text("SELECT pg_advisory_xact_lock(k) FROM unnest(CAST(:keys AS bigint[])) AS k"),
                {"keys": keys},
            )
        # Live jobs first, locked, then realizations: a job that a worker finishes
        # meanwhile is then either still live (its finish waits for our lock) or Done
        # with its realization visible to the next statement (PostgreSQL's READ
        # COMMITTED). The other order missed both, and built the derivation twice.
        live: dict[str, int] = {}  # dref -> a live job building it
        for part in chunks(drefs):
            query = (
                select(jobs.c.dref, jobs.c.id)
                .where(
                    jobs.c.dref.in_(part),
                    jobs.c.vo == vo,
                    jobs.c.status.in_([s.value for s in LIVE_STATUSES]),
                )
                .order_by(jobs.c.id)
            )
            for dref, job_id in conn.execute(query.with_for_update() if lock else query):
                live.setdefault(dref, job_id)
        matchers = {d: (drv.name, drv.matcher) for d, drv in ordered}
        return plan(ordered, self._candidates(conn, matchers, vo), live=live, forced=forced)

    def _candidates(
        self, conn: Connection, matchers: Mapping[str, tuple[str, Matcher]], vo: str
    ) -> dict[str, list[Candidate]]:
        """The realizations of each derivation (DRef -> its name and matcher) that *vo*
        has a claim on, oldest first. For an ``exact`` matcher: the realizations it names
        that *vo* sees, of a derivation of the same name (its DRef differs: the matcher is
        part of it); one of another VO is absent, exactly as one that does not exist."""
        # EXISTS, not a join: the rows are found from the DRefs (or RRefs) asked for, then
        # each claim looked up; a join let SQLite read every claim of the VO instead.
        claimed = exists().where(
            realization_vos.c.rref == realizations.c.rref, realization_vos.c.vo == vo
        )
        drefs = [d for d, (_, m) in matchers.items() if m.kind != "exact"]
        exact = {r for _, m in matchers.values() if m.kind == "exact" for r in m.rrefs or ()}
        found: dict[str, list[Candidate]] = defaultdict(list)
        named: dict[str, tuple[str, Candidate]] = {}
        for part in chunks(sorted(exact)):
            rows = conn.execute(
                select(
                    derivations.c.name,
                    realizations.c.rref,
                    realizations.c.output,
                    realizations.c.context,
                    realizations.c.metrics,
                )
                .join(derivations, derivations.c.dref == realizations.c.dref)
                .where(realizations.c.rref.in_(part), claimed)
            )
            for r in rows:
                named[r.rref] = (r.name, candidate(r.rref, r.output, r.context, r.metrics))
        for dref, (name, m) in matchers.items():
            if m.kind == "exact":
                found[dref] = [
                    named[r][1] for r in m.rrefs or () if r in named and named[r][0] == name
                ]
        for part in chunks(sorted(set(drefs))):
            rows = conn.execute(
                select(
                    realizations.c.dref,
                    realizations.c.rref,
                    realizations.c.output,
                    realizations.c.context,
                    realizations.c.metrics,
                )
                .where(realizations.c.dref.in_(part), claimed)
                .order_by(realizations.c.created, realizations.c.rref)
            )
            for dref, rref, output, context, metrics in rows:
                found[dref].append(candidate(rref, output, context, metrics))
        return found

    def _chosen_realizations(
        self, conn: Connection, wanted: Sequence[tuple[int, str]]
    ) -> dict[tuple[int, str], tuple[Matcher, list[Candidate] | str]]:
        """For (pipeline id, input DRef) pairs, what the input's matcher chooses now (or
        why it cannot), among the realizations of the context the pipeline built or
        reused it with (that of its stage's realization in the pipeline), among those the
        pipeline's VO has a claim on."""
        if not wanted:
            return {}
        needed = sorted({d for _, d in wanted})
        matchers: dict[str, tuple[str, Matcher]] = {}
        for part in chunks(needed):
            rows = conn.execute(
                select(derivations.c.dref, derivations.c.name, derivations.c.body).where(
                    derivations.c.dref.in_(part)
                )
            )
            for r in rows:
                doc = json.loads(r.body).get("matcher", {})
                matchers[r.dref] = (r.name, Matcher.model_validate(doc))
        shown: dict[tuple[int, str], str] = {}  # the realization the pipeline's stage shows
        pipeline_ids = sorted({p for p, _ in wanted})
        for part in chunks(needed):
            rows = conn.execute(
                select(
                    pipeline_stages.c.pipeline_id,
                    pipeline_stages.c.dref,
                    func.coalesce(pipeline_stages.c.cached_rref, jobs.c.rref).label("rref"),
                )
                .outerjoin(jobs, jobs.c.id == pipeline_stages.c.job_id)
                .where(
                    pipeline_stages.c.pipeline_id.in_(pipeline_ids),
                    pipeline_stages.c.dref.in_(part),
                )
            )
            shown.update(((r.pipeline_id, r.dref), r.rref) for r in rows if r.rref)
        vo_of: dict[int, str] = {}
        for part in chunks(pipeline_ids):
            rows = conn.execute(
                select(pipelines.c.id, pipelines.c.vo).where(pipelines.c.id.in_(part))
            )
            vo_of.update((r.id, r.vo) for r in rows)
        by_vo: dict[str, set[str]] = defaultdict(set)
        for pipeline_id, dref in wanted:
            by_vo[vo_of[pipeline_id]].add(dref)
        found = {
            vo: self._candidates(conn, {d: matchers[d] for d in sorted(drefs)}, vo)
            for vo, drefs in by_vo.items()
        }
        chosen: dict[tuple[int, str], tuple[Matcher, list[Candidate] | str]] = {}
        for key in wanted:
            name, matcher = matchers[key[1]]
            cands = found[vo_of[key[0]]].get(key[1], [])
            ref = next((c for c in cands if c.rref == shown.get(key)), None)
            considered = in_context(matcher, cands, None if ref is None else ref.context)
            choice = choose(matcher, name, considered)
            if choice.error is not None:
                chosen[key] = (matcher, choice.error)
            elif not choice.chosen:
                chosen[key] = (matcher, f"stage {name!r} has no realization")
            else:
                chosen[key] = (matcher, choice.chosen)
        return chosen

    # -- workers: claim, run, finish ------------------------------------------------

    async def claim(
        self,
        job_ids: Sequence[int],
        worker: str,
        *,
        start: bool = False,
        source: str = "worker",
        budget: int | None = None,
    ) -> list[ClaimedJob]:
        """Waiting -> Matched for the jobs no other worker took; exactly one worker wins each.

        With *start* the won jobs go on to Running in the same transaction. Only jobs
        the worker can serve are taken (see :meth:`claim_batch`).
        """
        outcome = await self.claim_batch(job_ids, worker, start=start, source=source, budget=budget)
        return outcome.claimed

    async def claim_batch(
        self,
        job_ids: Sequence[int],
        worker: str,
        *,
        start: bool = True,
        source: str = "worker",
        budget: int | None = None,
    ) -> ClaimOutcome:
        """Claim what *worker* can serve of *job_ids*, in order, within *budget* slots.

        A registered worker takes only jobs of its queues whose cpus, memory and gpus
        fit what it declared (a worker that never registered takes anything). With a
        *budget*, jobs are taken while the cpus taken so far are below it (the last one
        may go over); the ids after that are returned untouched in ``rest``. Jobs the
        worker cannot serve stay Waiting: those another live worker can serve come back
        in ``passed`` (to be queued again), the others get a minor status saying why.
        """

        def tx(conn: Connection) -> Any:
            return self._claim(conn, job_ids, worker, start=start, source=source, budget=budget)

        return await self.engines.write(tx)

    def _capacity(self, conn: Connection, worker: str) -> WorkerCapacity | None:
        """What *worker* declared when it registered (None: it never did)."""
        if worker in self._capacities:
            return self._capacities[worker]
        row = conn.execute(
            select(workers.c.queues, workers.c.slots, workers.c.memory_mb, workers.c.gpus).where(
                workers.c.id == worker
            )
        ).first()
        if row is None:
            return None
        capacity = _capacity_of(row)
        self._capacities[worker] = capacity
        return capacity

    def _live_capacities(self, conn: Connection, stale_after: float) -> list[WorkerCapacity]:
        """What the live workers serve: seen within *stale_after* seconds, not stopped."""
        rows = conn.execute(
            select(workers.c.queues, workers.c.slots, workers.c.memory_mb, workers.c.gpus)
            .where(
                workers.c.stopped.is_(None),
                workers.c.last_seen >= now() - timedelta(seconds=stale_after),
            )
            .distinct()
        )
        return [_capacity_of(row) for row in rows]

    def _claim(
        self,
        conn: Connection,
        job_ids: Sequence[int],
        worker: str,
        *,
        start: bool,
        source: str,
        budget: int | None = None,
    ) -> ClaimOutcome:
        outcome = ClaimOutcome()
        capacity = self._capacity(conn, worker)
        waiting: dict[int, Any] = {}
        for part in chunks(job_ids):
            rows = conn.execute(
                select(jobs.c.id, jobs.c.queue, jobs.c.cpus, jobs.c.memory_mb, jobs.c.gpus).where(
                    jobs.c.id.in_(part),
                    jobs.c.status == S.WAITING.value,
                    # a retry or reschedule waits out its backoff (a tick sends it when due)
                    or_(jobs.c.not_before.is_(None), jobs.c.not_before <= now()),
                )
            )
            waiting.update((row.id, row) for row in rows)
        candidates: list[int] = []
        cannot: list[Any] = []
        taken = 0
        for i, job_id in enumerate(job_ids):
            row = waiting.get(job_id)
            if row is None:  # taken by another worker, or no longer Waiting
                continue
            if capacity is not None and not capacity.fits(
                row.queue, row.cpus, row.memory_mb, row.gpus
            ):
                cannot.append(row)
                continue
            if budget is not None and taken >= budget:
                outcome.rest = list(job_ids[i:])
                break
            candidates.append(job_id)
            taken += row.cpus
        if cannot:
            outcome.passed = self._pass_on(conn, cannot, source)
        if not candidates:
            return outcome
        matched = f"Matched by {worker}"
        if start:
            won = self._set_status(
                conn,
                candidates,
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
                conn, candidates, [S.WAITING], S.MATCHED, matched, source, worker=worker
            )
        position = {job_id: i for i, job_id in enumerate(job_ids)}
        outcome.claimed = self._claimed_jobs(conn, sorted(won, key=position.__getitem__))
        return outcome

    def _pass_on(self, conn: Connection, rows: Sequence[Any], source: str) -> list[QueuedJob]:
        """Waiting jobs a worker could not serve: those a live worker can serve are returned
        (to be queued again); the others get a minor status that says why."""
        live = self._live_capacities(conn, WORKER_STALE_SECONDS)
        passed: list[QueuedJob] = []
        reasons: dict[str, list[int]] = defaultdict(list)
        for row in rows:
            reason = unserved_reason(live, row.queue, row.cpus, row.memory_mb, row.gpus)
            if reason is None:
                passed.append(QueuedJob(row.id, row.queue))
            else:
                reasons[reason].append(row.id)
        for reason, ids in reasons.items():
            self._set_minor(conn, ids, reason, source)
        return passed

    def _set_minor(
        self,
        conn: Connection,
        job_ids: Sequence[int],
        minor: str,
        source: str,
        *,
        where: Any = None,
    ) -> list[QueuedJob]:
        """Give Waiting jobs a new minor status; a history row only for those it changes."""
        ts = now()
        changed: list[QueuedJob] = []
        for part in chunks(job_ids):
            query = update(jobs).where(
                jobs.c.id.in_(part),
                jobs.c.status == S.WAITING.value,
                jobs.c.minor_status != minor,
            )
            if where is not None:
                query = query.where(where)
            result = conn.execute(
                query.values(minor_status=minor, updated=ts).returning(jobs.c.id, jobs.c.queue)
            )
            changed.extend(QueuedJob(r[0], r[1]) for r in result)
        self._history(conn, sorted(j.id for j in changed), S.WAITING, minor, source, ts)
        return changed

    def _claimed_jobs(self, conn: Connection, job_ids: Sequence[int]) -> list[ClaimedJob]:
        if not job_ids:
            return []
        rows: list[Any] = []
        for part in chunks(job_ids):
            rows.extend(
                conn.execute(
                    select(
                        jobs.c.id,
                        jobs.c.pipeline_id,
                        jobs.c.dref,
                        jobs.c.attempt,
                        jobs.c.queue,
                        jobs.c.cpus,
                        jobs.c.memory_mb,
                        jobs.c.gpus,
                        jobs.c.retries,
                        jobs.c.retry_backoff,
                        jobs.c.builder_extra,
                        derivations.c.body,
                        job_secrets.c.sealed,
                    )
                    .join(derivations, derivations.c.dref == jobs.c.dref)
                    .outerjoin(job_secrets, job_secrets.c.job_id == jobs.c.id)
                    .where(jobs.c.id.in_(part))
                )
            )
        parsed = {row.id: (row, _with_scheduling(row)) for row in rows}
        wanted = {
            (row.pipeline_id, d) for row, drv in parsed.values() for d in drv.input_drefs().values()
        }
        chosen = self._chosen_realizations(conn, sorted(wanted))
        claimed = []
        for job_id in job_ids:
            row, drv = parsed[job_id]
            inputs: dict[str, InputRealization] = {}
            choices: dict[str, tuple[InputRealization, ...]] = {}
            errors: dict[str, str] = {}
            for name, d in drv.input_drefs().items():
                matcher, picked = chosen[(row.pipeline_id, d)]
                if isinstance(picked, str):
                    errors[name] = picked
                    continue
                found = tuple(InputRealization(c.rref, c.output) for c in picked)
                inputs[name] = found[0]
                if not matcher.single:
                    choices[name] = found
            claimed.append(
                ClaimedJob(row.id, row.dref, drv, row.attempt, inputs, row.sealed, choices, errors)
            )
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
            vo_of = self._job_vos(
                conn, [*(x.job_id for x in successes), *(x.job_id for x in failures)]
            )
            # known before this finish: a some(n) build that yields one is deterministic
            known = self._known_rrefs(conn, [s.rref for s in successes])
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
            self._claim_results(conn, vo_of, successes, failures)
            if successes:
                again = self._build_again(conn, worker, successes, known, vo_of, ts)
                done_ids = self._end_jobs(
                    conn,
                    [
                        (x.job_id, S.DONE, "Built", x.rref, x.log)
                        for x in successes
                        if x.job_id not in again
                    ],
                    ts,
                    worker,
                )
                outcome.released = [*self._release_dependents(conn, done_ids, ts), *again]
            if failures:
                # retried at once (no backoff): queued, or claimed below, like released jobs
                outcome.released.extend(self._fail(conn, worker, failures, ts))
            if claim_released and outcome.released:
                claim = self._claim(
                    conn,
                    outcome.released,
                    worker,
                    start=True,
                    source="worker",
                    budget=claim_released,
                )
                outcome.claimed = claim.claimed
                won = {c.id for c in outcome.claimed}
                outcome.released = [j for j in outcome.released if j not in won]
            outcome.queues = self._queues(conn, outcome.released)

        await self.engines.write(tx)
        return outcome

    def _job_vos(self, conn: Connection, job_ids: Sequence[int]) -> dict[int, str]:
        """The VO of each job."""
        vo_of: dict[int, str] = {}
        for part in chunks(sorted(set(job_ids))):
            rows = conn.execute(select(jobs.c.id, jobs.c.vo).where(jobs.c.id.in_(part)))
            vo_of.update((r.id, r.vo) for r in rows)
        return vo_of

    def _claim_results(
        self,
        conn: Connection,
        vo_of: Mapping[int, str],
        successes: Sequence[BuildSuccess],
        failures: Sequence[BuildFailure],
    ) -> None:
        """Give each job's VO a claim on what the job made: its realization (a
        deterministic rebuild of another VO's one included: it is that VO's too now),
        the output's blobs and the log. The realizations rows must exist."""
        rrefs: dict[str, set[str]] = defaultdict(set)
        blobs: dict[str, dict[str, int]] = defaultdict(dict)
        results: list[BuildSuccess | BuildFailure] = [*successes, *failures]
        for x in results:
            vo = vo_of.get(x.job_id)
            if vo is None:
                continue
            blobs[vo].update(x.blobs)
            if isinstance(x, BuildSuccess):
                rrefs[vo].add(x.rref)
        for vo, sizes in sorted(blobs.items()):
            claim_blobs(conn, vo, sizes)
        for vo, found in sorted(rrefs.items()):
            claim_realizations(conn, vo, found)

    def _known_rrefs(self, conn: Connection, rrefs: Sequence[str]) -> set[str]:
        known: set[str] = set()
        for part in chunks(sorted(set(rrefs))):
            rows = conn.execute(select(realizations.c.rref).where(realizations.c.rref.in_(part)))
            known.update(r[0] for r in rows)
        return known

    def _build_again(
        self,
        conn: Connection,
        worker: str,
        successes: Sequence[BuildSuccess],
        known: set[str],
        vo_of: Mapping[int, str],
        ts: datetime,
    ) -> list[int]:
        """The ``some(n)`` and ``best(..., at_least=n)`` jobs to build once more: Waiting
        again, to be queued.

        Such a job builds until its derivation has n realizations with its context:
        one build at a time, each a new attempt. A build that yields an RRef already
        known is deterministic: building again would yield it again, so the job is done
        with what exists (a dependent sees those).
        """
        again: list[tuple[BuildSuccess, int, int]] = []
        for s in successes:
            m = s.matcher
            if m is None or m.build_until < 2 or s.rref in known:
                continue
            count = conn.execute(  # those the job's VO sees: the matcher sees no others
                select(func.count())
                .select_from(realizations)
                .join(realization_vos, realization_vos.c.rref == realizations.c.rref)
                .where(
                    realizations.c.dref == s.dref,
                    realizations.c.context == json.dumps(s.context, sort_keys=True),
                    realization_vos.c.vo == vo_of.get(s.job_id, LOCAL_VO),
                )
            ).scalar_one()
            if count < m.build_until:
                again.append((s, count, m.build_until))
        held = self._held(conn, [s.job_id for s, _, _ in again], worker)
        requeued: list[int] = []
        for s, count, n in again:
            if s.job_id not in held:
                continue
            matcher = s.matcher.describe() if s.matcher else f"some({n})"
            minor = f"Built {count} of {n} realizations ({matcher}): building another"
            conn.execute(
                update(jobs)
                .where(jobs.c.id == s.job_id)
                .values(
                    status=S.WAITING.value,
                    minor_status=minor,
                    updated=ts,
                    rref=s.rref,
                    log=s.log,
                    attempt=jobs.c.attempt + 1,
                    worker=None,
                    heartbeat=None,
                    not_before=None,
                )
            )
            self._history(conn, [s.job_id], S.WAITING, minor, "worker", ts)
            requeued.append(s.job_id)
        return requeued

    def _queues(self, conn: Connection, job_ids: Sequence[int]) -> dict[int, str]:
        """The queue of each job."""
        queues: dict[int, str] = {}
        for part in chunks(job_ids):
            rows = conn.execute(select(jobs.c.id, jobs.c.queue).where(jobs.c.id.in_(part)))
            queues.update((r[0], r[1]) for r in rows)
        return queues

    def _release_dependents(self, conn: Connection, done: Sequence[int], ts: datetime) -> list[int]:
        """The jobs waiting for *done* (ended Done) that now have all their inputs:
        Waiting, to be queued. One whose inputs came out as they were when it was built is
        Done at once, with what it built then (``_reuse_unchanged``: early cutoff), and
        releases its own dependents in turn."""
        released: list[int] = []
        while done:
            ready = self._ready_dependents(conn, done, ts)
            reused = self._reuse_unchanged(conn, ready, ts)
            released.extend(j for j in ready if j not in reused)
            done = sorted(reused)
        return sorted(released)

    def _ready_dependents(self, conn: Connection, done: Sequence[int], ts: datetime) -> list[int]:
        """Count *done* off the pending inputs of their dependents; the ones left with none
        become Waiting."""
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

    def _reuse_unchanged(self, conn: Connection, ready: Sequence[int], ts: datetime) -> set[int]:
        """Early cutoff: the jobs among *ready* (just Waiting) whose matcher is satisfied by
        realizations built from exactly the input realizations their inputs' matchers
        choose now (an input rebuilt gave the same RRef: ``--force`` of a deterministic
        stage). They are Done, their stages cached; nothing is built twice. Forced jobs
        build anyway."""
        if not ready:
            return set()
        rows: list[Any] = []
        for part in chunks(ready):
            rows.extend(
                conn.execute(
                    select(
                        jobs.c.id, jobs.c.pipeline_id, jobs.c.dref, jobs.c.vo, derivations.c.body
                    )
                    .join(derivations, derivations.c.dref == jobs.c.dref)
                    .where(
                        jobs.c.id.in_(part),
                        jobs.c.forced.is_(False),
                        # only a derivation realized before can have been built from these
                        exists().where(realizations.c.dref == jobs.c.dref),
                    )
                )
            )
        if not rows:
            return set()
        drvs = {row.id: Derivation.model_validate_json(row.body) for row in rows}
        chosen = self._chosen_realizations(
            conn,
            sorted({(r.pipeline_id, d) for r in rows for d in drvs[r.id].input_drefs().values()}),
        )
        by_vo: dict[str, dict[str, tuple[str, Matcher]]] = defaultdict(dict)
        for row in rows:
            by_vo[row.vo][row.dref] = (drvs[row.id].name, drvs[row.id].matcher)
        found = {vo: self._candidates(conn, matchers, vo) for vo, matchers in by_vo.items()}
        reuse: list[dict[str, Any]] = []
        for row in rows:
            drv = drvs[row.id]
            picked = {d: chosen[(row.pipeline_id, d)][1] for d in drv.input_drefs().values()}
            inputs = {d: p for d, p in picked.items() if not isinstance(p, str)}
            if drv.matcher.kind == "exact" or len(inputs) < len(picked):
                continue  # exact looks at no context; an input in error: the build reports it
            considered = in_context(
                drv.matcher, found[row.vo].get(row.dref, []), context_of(drv, inputs)
            )
            choice = choose(drv.matcher, drv.name, considered)
            if choice.error is None and choice.chosen and not choice.missing:
                reuse.append({"_id": row.id, "_rref": choice.chosen[0].rref})
        if not reuse:
            return set()
        minor = "Reused: its inputs came out as they were when it was built"
        conn.execute(
            update(jobs)
            .where(jobs.c.id == bindparam("_id"))
            .values(status=S.DONE.value, minor_status=minor, updated=ts, rref=bindparam("_rref")),
            reuse,
        )
        # every stage this job builds (its pipeline's, and those of pipelines that joined it)
        conn.execute(
            update(pipeline_stages)
            .where(pipeline_stages.c.job_id == bindparam("_id"))
            .values(cached_rref=bindparam("_rref")),
            reuse,
        )
        ids = [r["_id"] for r in reuse]
        self._history(conn, ids, S.DONE, minor, "worker", ts)
        self._drop_secrets(conn, ids)
        return set(ids)

    def _held(
        self, conn: Connection, job_ids: Sequence[int], worker: str | None = None
    ) -> set[int]:
        """The jobs among *job_ids* that a worker (*worker*, if given) still holds, locked
        until commit. A job killed, or rescheduled after its worker was thought lost, is not."""
        held: set[int] = set()
        for part in chunks(job_ids):
            query = select(jobs.c.id).where(
                jobs.c.id.in_(part), jobs.c.status.in_([x.value for x in HELD])
            )
            if worker is not None:
                query = query.where(jobs.c.worker == worker)
            held.update(r[0] for r in conn.execute(query.with_for_update()))
        return held

    def _end_jobs(
        self,
        conn: Connection,
        ends: Sequence[tuple[int, JobStatus, str, str | None, str | None]],
        ts: datetime,
        worker: str | None = None,
    ) -> list[int]:
        """Give held jobs their final status: ``(job id, Done or Failed, minor status, rref,
        log)``. A job no longer held (by *worker*, if given: killed or rescheduled meanwhile)
        keeps its status. Returns the ended."""
        held = self._held(conn, [e[0] for e in ends], worker)
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
        self._drop_secrets(conn, ended)
        return ended

    def _fail(
        self, conn: Connection, worker: str, failures: Sequence[BuildFailure], ts: datetime
    ) -> list[int]:
        """Failed builds: retried while the job has retries left, else Failed with dependents.

        Returns the retried jobs that are due at once (no backoff), to be queued.
        """
        held = self._held(conn, [f.job_id for f in failures], worker)
        rows: dict[int, Any] = {}
        for part in chunks(sorted(held)):
            rows.update(
                (r.id, r)
                for r in conn.execute(
                    select(
                        jobs.c.id,
                        jobs.c.attempt,
                        jobs.c.failures,
                        jobs.c.retries,
                        jobs.c.retry_backoff,
                    ).where(jobs.c.id.in_(part))
                )
            )
        retry = [f for f in failures if f.job_id in rows and retries_left(rows[f.job_id])]
        retried = {f.job_id for f in retry}
        final = [f for f in failures if f.job_id not in retried]
        failed = self._end_jobs(
            conn, [(f.job_id, S.FAILED, f.reason, None, f.log) for f in final], ts, worker
        )
        self._fail_dependents(conn, failed, ts)
        return [f.job_id for f in retry if self._retry(conn, f, rows[f.job_id], ts)]

    def _retry(self, conn: Connection, failure: BuildFailure, row: Any, ts: datetime) -> bool:
        """A failed attempt of a job with retries left: Rescheduled (the reason and the log
        of the attempt in the history), then Waiting until the backoff has passed. Its
        dependents wait on. Returns whether it is due at once."""
        n = row.failures + 1
        delay = row.retry_backoff * 2 ** (n - 1)
        logged = f" (log {failure.log})" if failure.log else ""
        attempt_minor = f"Attempt {row.attempt} failed: {failure.reason}"
        # the log's digest must survive the cut to the column's size
        attempt_minor = attempt_minor[: 512 - len(logged)] + logged
        minor = f"Retry {n} of {row.retries} in {delay:.1f} s: {failure.reason}"[:512]
        conn.execute(
            update(jobs)
            .where(jobs.c.id == failure.job_id)
            .values(
                status=S.WAITING.value,
                minor_status=minor,
                updated=ts,
                failures=n,
                attempt=jobs.c.attempt + 1,
                worker=None,
                heartbeat=None,
                not_before=ts + timedelta(seconds=delay),
                log=failure.log,  # the failed attempt's log, until the next attempt ends
            )
        )
        self._history(
            conn,
            [failure.job_id],
            S.WAITING,
            minor,
            "worker",
            ts,
            via=[(S.RESCHEDULED, attempt_minor)],
        )
        return delay <= 0

    def _fail_dependents(
        self,
        conn: Connection,
        failed: Sequence[int],
        ts: datetime,
        *,
        verb: str = "failed",
        source: str = "worker",
    ) -> list[int]:
        """Dependents of failed (or killed) jobs never run: Failed, naming the input
        ("Input 'a' failed", "Input 'a' was killed"). Returns every job failed so."""
        frontier = list(failed)
        failed_all: list[int] = []
        first = True
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
                by_reason[f"Input {input_name!r} {verb if first else 'failed'}"].append(job_id)
            frontier = []
            for reason, ids in by_reason.items():
                frontier.extend(
                    self._set_status(
                        conn, sorted(set(ids)), [S.CHECKING, S.WAITING], S.FAILED, reason, source
                    )
                )
            failed_all.extend(frontier)
            first = False
        return failed_all

    async def heartbeat(self, job_ids: Sequence[int], worker: str | None = None) -> None:
        """The jobs are still being worked on; with *worker*, it is alive (``last_seen``)
        and only the jobs it still holds are refreshed."""
        ts = now()

        def tx(conn: Connection) -> Any:
            for part in chunks(job_ids):
                query = update(jobs).where(jobs.c.id.in_(part))
                if worker is not None:
                    query = query.where(jobs.c.worker == worker)
                conn.execute(query.values(heartbeat=ts))
            if worker is not None:
                conn.execute(update(workers).where(workers.c.id == worker).values(last_seen=ts))

        await self.engines.write(tx)

    async def held_by(self, worker: str, job_ids: Sequence[int]) -> set[int]:
        """The jobs among *job_ids* that *worker* still holds; it stops building the others
        (killed, or rescheduled after it was thought lost)."""

        def tx(conn: Connection) -> Any:
            held: set[int] = set()
            for part in chunks(job_ids):
                rows = conn.execute(
                    select(jobs.c.id).where(
                        jobs.c.id.in_(part),
                        jobs.c.worker == worker,
                        jobs.c.status.in_([s.value for s in HELD]),
                    )
                )
                held.update(r[0] for r in rows)
            return held

        return await self.engines.read(tx)

    # -- kill --------------------------------------------------------------------------

    async def kill_jobs(
        self,
        job_ids: Sequence[int],
        reason: str = "Killed",
        source: str = "user",
        *,
        actor: Actor | None = None,
    ) -> KillOutcome:
        """Live jobs -> Killed, and their dependents Failed ("Input 'a' was killed").

        Jobs that already ended are left as they are (not in ``killed``). A worker
        building a killed job notices (``held_by``), stops the build, and its result is
        not recorded: the job is no longer held. With *actor*, every job must be one it
        may act on: ObjectNotFoundError for a job of another VO (as for one that does not
        exist), ForbiddenError for another user's without VOAdmin; nothing is killed then.
        """
        ts = now()

        def tx(conn: Connection) -> Any:
            if actor is not None:
                self._check_jobs(conn, job_ids, actor, "kill")
            return self._kill(conn, job_ids, reason, source, ts)

        return await self.engines.write(tx)

    def _check_jobs(
        self, conn: Connection, job_ids: Sequence[int], actor: Actor, verb: str
    ) -> dict[int, Any]:
        """The rows (id, status, owner) of *job_ids*, locked; raise if *actor* may not
        act on one of them (see ``kill_jobs``)."""
        rows: dict[int, Any] = {}
        for part in chunks(sorted(set(job_ids))):
            query = select(jobs.c.id, jobs.c.status, jobs.c.owner).where(
                jobs.c.id.in_(part), jobs.c.vo == actor.vo
            )
            rows.update((r.id, r) for r in conn.execute(query.with_for_update()))
        for job_id in sorted(set(job_ids)):
            row = rows.get(job_id)
            if row is None:
                raise ObjectNotFoundError(f"job {job_id} does not exist")
            if not actor.may_act_on(row.owner):
                raise actor.refuse(f"job {job_id}", row.owner, verb)
        return rows

    async def kill_pipeline(
        self,
        pipeline_id: int,
        reason: str = "Killed",
        source: str = "user",
        *,
        actor: Actor | None = None,
    ) -> KillOutcome | None:
        """Kill every live job of the pipeline (None if there is no such pipeline).

        A job the pipeline shares with another one (joined at submission) is killed
        too: the other pipeline's stages that need it fail. With *actor*, a pipeline of
        another VO does not exist, another user's is a ForbiddenError without VOAdmin,
        and a joined job of another user is left alone unless *actor* has VOAdmin
        (``spared``): the other user's pipeline needs it.
        """
        ts = now()

        def tx(conn: Connection) -> Any:
            query = select(pipelines.c.id, pipelines.c.owner).where(pipelines.c.id == pipeline_id)
            if actor is not None:
                query = query.where(pipelines.c.vo == actor.vo)
            found = conn.execute(query).first()
            if found is None:
                return None
            if actor is not None and not actor.may_act_on(found.owner):
                raise actor.refuse(f"pipeline {pipeline_id}", found.owner, "kill")
            rows = conn.execute(
                select(pipeline_stages.c.job_id, jobs.c.owner, jobs.c.status)
                .join(jobs, jobs.c.id == pipeline_stages.c.job_id)
                .where(pipeline_stages.c.pipeline_id == pipeline_id)
            ).all()
            mine = {r.job_id for r in rows if actor is None or actor.may_act_on(r.owner)}
            outcome = self._kill(conn, sorted(mine), reason, source, ts)
            outcome.spared = sorted(
                r.job_id
                for r in rows
                if r.job_id not in mine and JobStatus(r.status) in LIVE_STATUSES
            )
            return outcome

        return await self.engines.write(tx)

    def _kill(
        self, conn: Connection, job_ids: Sequence[int], reason: str, source: str, ts: datetime
    ) -> KillOutcome:
        killed = self._set_status(
            conn, job_ids, list(LIVE_STATUSES), S.KILLED, reason[:512], source
        )
        failed = self._fail_dependents(conn, killed, ts, verb="was killed", source=source)
        return KillOutcome(killed=sorted(killed), failed=sorted(failed))

    # -- workers registry and recovery -----------------------------------------------

    async def register_worker(
        self, worker: str, hostname: str, pid: int, capacity: WorkerCapacity | None = None
    ) -> None:
        """Record a starting worker and what it serves (default: ``WorkerCapacity()``, the
        default queue with one slot). Claims for *worker* take only what it can serve."""
        ts = now()
        capacity = capacity or WorkerCapacity()

        def tx(conn: Connection) -> Any:
            conn.execute(
                self._insert_ignore(workers),
                [
                    {
                        "id": worker,
                        "hostname": hostname,
                        "pid": pid,
                        "started": ts,
                        "last_seen": ts,
                        "queues": json.dumps(list(capacity.queues)),
                        "slots": capacity.slots,
                        "memory_mb": capacity.memory_mb,
                        "gpus": capacity.gpus,
                    }
                ],
            )

        await self.engines.write(tx)
        self._capacities.pop(worker, None)  # read again from the row (a retry keeps the first)

    async def note_unserved(
        self, stale_after: float = WORKER_STALE_SECONDS, source: str = "scheduler"
    ) -> list[QueuedJob]:
        """Say why Waiting jobs that no live worker can serve wait; undo it once one can.

        A live worker was seen within *stale_after* seconds and has not stopped. A job no
        live worker can serve gets a minor status that says why ("No worker serves queue
        'gpu'", "No worker has 4 slots for this job (largest: 2)"...); a job that had
        one and can now be served is "Ready" again. A history row is written only when
        the minor status changes. Returns the jobs that are Ready again: queue them
        again, their message may have been dropped by a worker that could not serve them.
        """

        def tx(conn: Connection) -> Any:
            live = self._live_capacities(conn, stale_after)
            kinds = conn.execute(
                select(jobs.c.queue, jobs.c.cpus, jobs.c.memory_mb, jobs.c.gpus)
                .where(jobs.c.status == S.WAITING.value)
                .distinct()
            ).all()
            ready_again: list[QueuedJob] = []
            for queue, cpus, memory_mb, gpus in kinds:
                reason = unserved_reason(live, queue, cpus, memory_mb, gpus)
                of_kind = and_(
                    jobs.c.queue == queue,
                    jobs.c.cpus == cpus,
                    jobs.c.memory_mb == memory_mb,
                    jobs.c.gpus == gpus,
                )
                ids = [
                    r[0]
                    for r in conn.execute(
                        select(jobs.c.id)
                        .where(jobs.c.status == S.WAITING.value, of_kind)
                        .order_by(jobs.c.id)
                    )
                ]
                if reason is not None:
                    self._set_minor(conn, ids, reason, source)
                else:
                    flagged = jobs.c.minor_status.startswith(UNSERVED_PREFIX, autoescape=True)
                    ready_again += self._set_minor(conn, ids, "Ready", source, where=flagged)
            return sorted(ready_again)

        return await self.engines.write(tx)

    async def mark_workers_stopped(
        self,
        *,
        worker_id: str | None = None,
        hostname: str | None = None,
        pid: int | None = None,
    ) -> list[str]:
        """Record that workers are gone (all of them, or those matching the filters):
        ``stall_lost`` then reschedules their jobs without waiting for the heartbeat
        timeout. A worker calls it with its own id when it stops; the embedded engine
        for the workers it knows are dead. Returns the ids marked."""
        ts = now()

        def tx(conn: Connection) -> Any:
            query = update(workers).where(workers.c.stopped.is_(None))
            if worker_id is not None:
                query = query.where(workers.c.id == worker_id)
            if hostname is not None:
                query = query.where(workers.c.hostname == hostname)
            if pid is not None:
                query = query.where(workers.c.pid == pid)
            result = conn.execute(query.values(stopped=ts).returning(workers.c.id))
            return sorted(r[0] for r in result)

        return await self.engines.write(tx)

    async def requeue_lost(self, older_than: float) -> list[QueuedJob]:
        """Waiting jobs whose message may be lost, with their queue, to be sent again.

        A Waiting job is sent again when it is due (its backoff, ``not_before``, has
        passed) and either became due since it was last touched (a retry or a
        reschedule after a backoff) or was not touched for *older_than* seconds (its
        message went missing). Their ``updated`` is set to now, so that a job is not
        sent again at every tick; claims make a repeated message harmless. A job that
        no live worker can serve (its minor status says so) is left alone: its message
        waits in its queue, and ``note_unserved`` sends it again when a worker appears.
        """
        ts = now()
        cutoff = ts - timedelta(seconds=older_than)

        def tx(conn: Connection) -> Any:
            rows = conn.execute(
                select(jobs.c.id, jobs.c.queue)
                .where(
                    jobs.c.status == S.WAITING.value,
                    ~jobs.c.minor_status.startswith(UNSERVED_PREFIX, autoescape=True),
                    or_(jobs.c.not_before.is_(None), jobs.c.not_before <= ts),
                    or_(
                        jobs.c.updated < cutoff,
                        and_(jobs.c.not_before.is_not(None), jobs.c.updated < jobs.c.not_before),
                    ),
                )
                .order_by(jobs.c.id)
            )
            queue_of = {job_id: queue for job_id, queue in rows}
            touched: list[int] = []
            for part in chunks(list(queue_of)):
                result = conn.execute(
                    update(jobs)
                    .where(jobs.c.id.in_(part), jobs.c.status == S.WAITING.value)
                    .values(updated=ts)
                    .returning(jobs.c.id)
                )
                touched.extend(r[0] for r in result)
            return [QueuedJob(j, queue_of[j]) for j in sorted(touched)]

        return await self.engines.write(tx)

    async def stall_lost(
        self,
        heartbeat_timeout: float,
        *,
        max_reschedules: int = 3,
        backoff: float = 0.0,
        source: str = "scheduler",
    ) -> StallOutcome:
        """Jobs held by a lost worker: Stalled, then Rescheduled and Waiting again.

        A held job (Matched, Running, Completing) is lost when its worker stopped
        (``mark_workers_stopped``), or when no heartbeat came for it for
        *heartbeat_timeout* seconds. It is rescheduled (``reschedules`` + 1,
        ``attempt`` + 1) to wait ``backoff * 2**(reschedules - 1)`` seconds; past
        *max_reschedules* lost workers it fails, and so do its dependents. A lost
        worker is never the build's fault: ``failures`` (and so ``retries``) is untouched.
        """
        ts = now()
        cutoff = ts - timedelta(seconds=heartbeat_timeout)

        def tx(conn: Connection) -> Any:
            stopped = select(workers.c.id).where(workers.c.stopped.is_not(None))
            rows = conn.execute(
                select(
                    jobs.c.id,
                    jobs.c.worker,
                    jobs.c.reschedules,
                    jobs.c.worker.in_(stopped).label("stopped"),
                ).where(
                    jobs.c.status.in_([s.value for s in HELD]),
                    or_(
                        jobs.c.worker.is_(None),
                        jobs.c.worker.in_(stopped),
                        func.coalesce(jobs.c.heartbeat, jobs.c.updated) < cutoff,
                    ),
                )
            )
            groups: dict[tuple[int, str], list[int]] = defaultdict(list)
            for r in rows:
                if r.worker is None:
                    why = "held by no worker"
                elif r.stopped:
                    why = f"worker {r.worker} stopped"
                else:
                    why = f"no heartbeat from worker {r.worker} for {heartbeat_timeout:g} s"
                groups[(r.reschedules + 1, why)].append(r.id)
            outcome = StallOutcome()
            due: list[int] = []
            for (n, why), ids in sorted(groups.items()):
                stalled = (S.STALLED, why[0].upper() + why[1:])
                if n > max_reschedules:
                    failed = self._set_status(
                        conn,
                        ids,
                        HELD,
                        S.FAILED,
                        f"Lost its worker {n} times (limit {max_reschedules}): {why}"[:512],
                        source,
                        via=[stalled],
                        reschedules=n,
                    )
                    outcome.failed.extend(failed)
                    outcome.failed.extend(self._fail_dependents(conn, failed, ts, source=source))
                    continue
                delay = backoff * 2 ** (n - 1)
                moved = self._set_status(
                    conn,
                    ids,
                    HELD,
                    S.WAITING,
                    f"Reschedule {n} of {max_reschedules} in {delay:.1f} s: {why}"[:512],
                    source,
                    via=[stalled, (S.RESCHEDULED, f"Worker lost ({n} of {max_reschedules})")],
                    reschedules=n,
                    attempt=jobs.c.attempt + 1,
                    worker=None,
                    heartbeat=None,
                    not_before=ts + timedelta(seconds=delay),
                )
                outcome.rescheduled.extend(moved)
                if delay <= 0:
                    due.extend(moved)
            for part in chunks(due):
                result = conn.execute(select(jobs.c.id, jobs.c.queue).where(jobs.c.id.in_(part)))
                outcome.due.extend(QueuedJob(job_id, queue) for job_id, queue in result)
            outcome.due.sort()
            outcome.rescheduled.sort()
            outcome.failed.sort()
            return outcome

        return await self.engines.write(tx)

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

    # A read given a *vo* sees only that VO's objects: one of another VO is None, exactly
    # as one that does not exist. Without one (the workers, the scheduler), it sees all.

    async def get_pipeline(self, pipeline_id: int, vo: str | None = None) -> PipelineInfo | None:
        def tx(conn: Connection) -> Any:
            return self._pipeline_info(conn, pipeline_id, vo)

        return await self.engines.read(tx)

    def _pipeline_info(
        self,
        conn: Connection,
        pipeline_id: int,
        vo: str | None = None,
        *,
        reused: Mapping[str, tuple[str, Candidate]] | None = None,
    ) -> PipelineInfo | None:
        """A pipeline and its stages. *reused*: its stages that reuse a realization (DRef
        -> name and realization), known already to the submission that recorded it: only
        the stages with a job are read (all of them otherwise)."""
        query = select(pipelines).where(pipelines.c.id == pipeline_id)
        if vo is not None:
            query = query.where(pipelines.c.vo == vo)
        row = conn.execute(query).first()
        if row is None:
            return None
        query = (
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
        if reused is not None:
            query = query.where(pipeline_stages.c.job_id.is_not(None))
        result = conn.execute(query)
        # plain dicts, validated at once with the pipeline (a model each costs more),
        # from rows unpacked as tuples (their attributes are slow): 1000s of stages
        stages = [
            {"dref": dref, "name": name, "cached": True, "rref": c.rref, "output": c.output}
            for dref, (name, c) in (reused or {}).items()
        ]
        stages += [
            {
                "dref": dref,
                "name": name,
                # no job, or one that found its result already built (_reuse_unchanged)
                "cached": cached_rref is not None,
                "job_id": job_id,
                "status": status,
                "minor_status": minor_status,
                "rref": cached_rref or rref,
                "output": output,
            }
            for dref, job_id, cached_rref, name, status, minor_status, rref, output in result
        ]
        counts = Counter("cached" if s["cached"] else s["status"] for s in stages)
        statuses = {s["status"] for s in stages if not s["cached"]}
        if statuses & {S.FAILED, S.KILLED}:
            status = "Failed"
        elif statuses <= {S.DONE}:
            status = "Done"
        else:
            status = "Running"
        return PipelineInfo.model_validate(
            {
                "id": row.id,
                "owner": row.owner,
                "created": row.created,
                "targets": json.loads(row.targets),
                "status": status,
                "counts": dict(counts),
                "stages": stages,
            }
        )

    async def pipeline_events(
        self, pipeline_id: int, after: int = 0, limit: int = 5000, *, vo: str | None = None
    ) -> PipelineEvents | None:
        """Status changes of the pipeline's jobs since event *after*, and whether it is finished."""

        def tx(conn: Connection) -> Any:
            query = select(pipelines.c.id).where(pipelines.c.id == pipeline_id)
            if vo is not None:
                query = query.where(pipelines.c.vo == vo)
            if conn.execute(query).first() is None:
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

    async def get_job(self, job_id: int, vo: str | None = None) -> JobInfo | None:
        def tx(conn: Connection) -> Any:
            query = select(jobs).where(jobs.c.id == job_id)
            if vo is not None:
                query = query.where(jobs.c.vo == vo)
            row = conn.execute(query).first()
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

    async def get_realization(self, rref: str, vo: str | None = None) -> RealizationInfo | None:
        """A realization (with *vo*: only one that VO has a claim on)."""

        def tx(conn: Connection) -> Any:
            return self._realization_rows(conn, realizations.c.rref == rref, vo)

        rows = await self.engines.read(tx)
        return rows[0] if rows else None

    async def realizations_of(self, dref: str, vo: str | None = None) -> list[RealizationInfo]:
        """The realizations of a derivation (with *vo*: those that VO has a claim on)."""

        def tx(conn: Connection) -> Any:
            return self._realization_rows(conn, realizations.c.dref == dref, vo)

        return await self.engines.read(tx)

    def _realization_rows(
        self, conn: Connection, where: Any, vo: str | None = None
    ) -> list[RealizationInfo]:
        query = select(realizations, derivations.c.name).join(
            derivations, derivations.c.dref == realizations.c.dref
        )
        if vo is not None:  # EXISTS, not a join: the planner then starts from *where*
            query = query.where(
                exists().where(
                    realization_vos.c.rref == realizations.c.rref, realization_vos.c.vo == vo
                )
            )
        rows = conn.execute(
            query.where(where).order_by(realizations.c.created, realizations.c.rref)
        )
        return [realization_info(r) for r in rows]

    async def visible_blobs(self, vo: str, digests: Iterable[str]) -> set[str]:
        """The subset of *digests* that *vo* has a claim on (``diracx.db.visibility``)."""
        wanted = list(digests)

        def tx(conn: Connection) -> Any:
            return visible_blobs(conn, vo, wanted)

        return await self.engines.read(tx)

    async def running_jobs(self, vo: str) -> int:
        """The jobs of *vo* not in a final status (its ``running_jobs`` quota counts them)."""

        def tx(conn: Connection) -> Any:
            return self._running_jobs(conn, vo)

        return await self.engines.read(tx)

    def _running_jobs(self, conn: Connection, vo: str) -> int:
        # ix_jobs_vo_status answers it from the index alone
        count = conn.execute(
            select(func.count())
            .select_from(jobs)
            .where(jobs.c.vo == vo, jobs.c.status.not_in([s.value for s in FINAL_STATUSES]))
        ).scalar_one()
        return int(count)

    async def vo_store_bytes(self, vo: str) -> int:
        """What *vo*'s blobs take in the store (``diracx.db.visibility.vo_store_bytes``)."""

        def tx(conn: Connection) -> Any:
            return vo_store_bytes(conn, vo)

        return await self.engines.read(tx)


__all__ = [
    "Actor",
    "Admit",
    "BuildFailure",
    "BuildSuccess",
    "ClaimOutcome",
    "ClaimedJob",
    "FinishOutcome",
    "InputRealization",
    "KillOutcome",
    "PipelineDB",
    "StallOutcome",
    "SubmitOutcome",
]
