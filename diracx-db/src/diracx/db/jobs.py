"""JobDB: the jobs API in DIRAC's manner (search, summary, status updates, history,
delete, reschedule), on the same ``Engines`` and tables as PipelineDB.

Status changes reuse PipelineDB's helpers (history rows, secrets dropped when a job
ends, dependents failed), so that a change made here has the same effects as one
made by the workers or the scheduler.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    func,
    literal_column,
    or_,
    select,
    true,
    update,
)

from diracx.core.broker import QueuedJob
from diracx.core.exceptions import ConflictError, ObjectNotFoundError
from diracx.core.job_search import (
    JOB_ATTRIBUTES,
    InvalidSearchError,
    JobActionResponse,
    JobHeartbeatResponse,
    JobSearchPage,
    JobSearchRequest,
    JobStatusResult,
    JobStatusUpdate,
    JobStatusUpdateResponse,
    JobSummaryRequest,
    Operator,
    SearchSpec,
    SortSpec,
    attribute_name,
    check_filter,
    check_sort,
    text_problem,
)
from diracx.core.models import RetriedJob, StatusHistoryEntry
from diracx.core.status import FINAL_STATUSES, TRANSITIONS, JobStatus, is_legal_transition
from diracx.db.engine import Engines
from diracx.db.pipelines import (
    Actor,
    Admit,
    PipelineDB,
    _with_scheduling,
    lock_vo,
    now,
)
from diracx.db.schema import (
    derivations,
    job_edges,
    job_status_history,
    jobs,
    pipeline_stages,
    pipelines,
)
from diracx.db.sql import chunks

S = JobStatus
# What PATCH /api/jobs/status may set. The other statuses carry promises only DiracX
# itself keeps: Done has a realization, Matched/Running/Completing a worker holding the
# job, Waiting a message in the broker; Rescheduled and Deleted have their own routes.
SETTABLE = frozenset({S.FAILED, S.KILLED, S.STALLED})
OWN_ROUTE = {
    S.RESCHEDULED: "POST /api/jobs/{id}/reschedule",
    S.WAITING: "POST /api/jobs/{id}/reschedule",
    S.DELETED: "DELETE /api/jobs/{id}",
}
ENDED = (S.DONE, S.FAILED, S.KILLED)  # what DELETE accepts
RESCHEDULABLE = (S.FAILED, S.KILLED, S.STALLED)
RETRIED = (S.FAILED, S.KILLED)  # the jobs a pipeline retry reschedules
BEATING = (S.RUNNING.value, S.COMPLETING.value)  # the jobs a heartbeat is for
BIGINT_COLUMNS = frozenset({"id", "pipeline_id"})  # the other integers are 32-bit


def _coerce(column: str, value: Any) -> Any:
    """A filter value as the column's type (InvalidSearchError if it cannot be)."""
    kind = JOB_ATTRIBUTES[column]
    if value is None:
        return None
    if isinstance(value, str):
        why = text_problem(value)
        if why:
            raise InvalidSearchError(f"the value for {column} {why}")
    if kind is int:
        number = _integer(column, value)
        bits = 63 if column in BIGINT_COLUMNS else 31
        if not -(2**bits) <= number < 2**bits:
            raise InvalidSearchError(f"{column}: {number} is out of range")
        return number
    if kind is datetime:
        if not isinstance(value, str):
            raise InvalidSearchError(f"{column} is a time (ISO 8601 text), not {value!r}")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidSearchError(
                f"{column} is a time: {value!r} is not ISO 8601 (2026-11-21T08:00:00Z)"
            ) from None
        try:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
        except OverflowError:
            raise InvalidSearchError(f"{column}: {value!r} is out of range") from None
    if isinstance(value, bool):
        raise InvalidSearchError(f"{column} is text, not {value!r}")
    return str(value)


def _integer(column: str, value: Any) -> int:
    if isinstance(value, bool):
        raise InvalidSearchError(f"{column} is an integer, not {value!r}")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        try:
            return int(value)
        except ValueError:  # more digits than Python converts
            pass
    raise InvalidSearchError(f"{column} is an integer, not {value!r}")


def like_to_glob(pattern: str) -> str:
    """SQL ``LIKE`` (``%``, ``_``, ``\\`` escapes) as SQLite ``GLOB``, which is
    case-sensitive as PostgreSQL's ``LIKE`` is, and uses an index for a prefix."""
    out: list[str] = []
    chars = iter(pattern)
    for c in chars:
        if c == "\\":
            c = next(chars, "\\")
            out.append(f"[{c}]" if c in "*?[" else c)
        elif c == "%":
            out.append("*")
        elif c == "_":
            out.append("?")
        elif c in "*?[":
            out.append(f"[{c}]")
        else:
            out.append(c)
    return "".join(out)


@dataclass
class RetryOutcome:
    """What ``JobDB.retry_pipeline`` did."""

    retried: list[RetriedJob] = field(default_factory=list)  # by id
    skipped: dict[int, str] = field(default_factory=dict)  # failed jobs left, and why
    to_queue: list[QueuedJob] = field(default_factory=list)  # the retried jobs now Waiting


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


class JobDB:
    """Searches and user actions on jobs."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines
        self._sqlite = engines.sqlite
        # the status-change helpers (history, secrets, dependents) of the same tables
        self._pipelines = PipelineDB(engines)

    @property
    def pipelines(self) -> PipelineDB:
        """A PipelineDB on the same engines (its reads: the VO's store bytes...)."""
        return self._pipelines

    # -- search ------------------------------------------------------------------

    def _condition(self, spec: SearchSpec) -> ColumnElement[bool]:
        name, op = check_filter(spec)
        col = jobs.c[name]
        if op in (Operator.IN, Operator.NOT_IN):
            values = [_coerce(name, v) for v in spec.values or []]
            present = [v for v in values if v is not None]
            if op is Operator.IN:
                found: ColumnElement[bool] = col.in_(present)
                return found | col.is_(None) if None in values else found
            other: ColumnElement[bool] = col.not_in(present) | col.is_(None)
            return and_(other, col.is_not(None)) if None in values else other
        if op is Operator.LIKE:
            if JOB_ATTRIBUTES[name] is not str:
                raise InvalidSearchError(f"operator 'like' applies to text, and {name} is not")
            pattern = _coerce(name, spec.value)
            if self._sqlite:
                return col.op("GLOB")(like_to_glob(pattern))
            return col.like(pattern, escape="\\")
        value = _coerce(name, spec.value)
        if value is None:
            if op is Operator.EQ:
                return col.is_(None)
            if op is Operator.NEQ:
                return col.is_not(None)
            raise InvalidSearchError(f"operator {op.value!r} needs a value")
        if op is Operator.EQ:
            return col == value
        if op is Operator.NEQ:  # DIRAC's neq: a job without the attribute differs too
            return (col != value) | col.is_(None)
        if op is Operator.LT:
            return col < value
        return col > value

    def _filters(self, search: Sequence[SearchSpec]) -> list[ColumnElement[bool]]:
        """The user's filters (InvalidSearchError before anything is read)."""
        return [self._condition(spec) for spec in search]

    def _where(
        self, conn: Connection, vo: str, filters: Sequence[ColumnElement[bool]]
    ) -> ColumnElement[bool]:
        """The user's filters, and always the VO: a user never finds another VO's jobs,
        whatever they filter on. Run in the transaction that then reads with it."""
        return and_(true(), *self._in_vo(conn, vo), *filters)

    def _in_vo(self, conn: Connection, vo: str) -> list[ColumnElement[bool]]:
        """The VO condition, as the database plans it best."""
        if not self._sqlite:
            return [jobs.c.vo == vo]  # PostgreSQL's statistics know how selective it is
        # SQLite has no statistics. The embedded engine has one VO: when no other VO has
        # jobs (in this transaction's snapshot) the condition is implied, and left out,
        # so that the plans are those of the indexes made for the searches (a covering
        # ix_jobs_name for a name prefix, the primary key for "newest first").
        others = conn.execute(
            select(jobs.c.id).where(or_(jobs.c.vo < vo, jobs.c.vo > vo)).limit(1)
        ).first()
        if others is None:
            return []
        # Else SQLite takes an equality for selective, and would seek ix_jobs_vo_status
        # for the VO rather than ix_jobs_name for a name prefix, or sort every id of the
        # VO rather than walk the primary key: many times slower when the VO holds most
        # jobs. Saying it matches most rows leaves it the index where the status is
        # constrained too, or for counts. (likelihood() wants a literal; typed Boolean,
        # SQLAlchemy would add "= 1".)
        return [func.likelihood(jobs.c.vo == vo, literal_column("0.99"))]

    def _order(self, sort: Sequence[SortSpec]) -> list[Any]:
        order: list[Any] = []
        seen: set[str] = set()
        for spec in sort:
            name, desc = check_sort(spec)
            if name in seen:
                continue
            seen.add(name)
            order.append(jobs.c[name].desc() if desc else jobs.c[name].asc())
        if "id" not in seen:  # a total order: pages neither repeat nor skip jobs
            order.append(jobs.c.id.asc())
        return order

    async def search(
        self, request: JobSearchRequest, page: int, per_page: int, *, vo: str
    ) -> JobSearchPage:
        """Page *page* (from 1) of *per_page* jobs of *vo* matching every filter, in order;
        the total counts every match. InvalidSearchError for an unknown attribute or
        operator."""
        names = [attribute_name(p) for p in request.parameters or []] or list(JOB_ATTRIBUTES)
        names = list(dict.fromkeys(names))
        filters = self._filters(request.search)
        order = self._order(request.sort)
        first = (page - 1) * per_page

        def tx(conn: Connection) -> Any:
            where = self._where(conn, vo, filters)
            # The page's ids first, from the indexes alone where they can (a "deferred
            # join"), then only those rows: sorting 12 500 full rows of a 100 000-job
            # table to keep 100 cost SQLite ten times more than sorting their ids.
            page_ids = (
                select(jobs.c.id)
                .where(where)
                .order_by(*order)
                .limit(per_page)
                .offset(first)
                .correlate(None)
            )
            rows = [
                {n: _json_value(v) for n, v in zip(names, row, strict=True)}
                for row in conn.execute(
                    select(*(jobs.c[n] for n in names))
                    .where(jobs.c.id.in_(page_ids))
                    .order_by(*order)
                )
            ]
            if first == 0 and len(rows) < per_page:  # everything is here: no count needed
                return len(rows), rows
            total = conn.execute(select(func.count()).select_from(jobs).where(where)).scalar_one()
            return total, rows

        total, rows = await self.engines.read(tx)
        return JobSearchPage(jobs=rows, total=total, first=first)

    async def summary(self, request: JobSummaryRequest, *, vo: str) -> list[dict[str, Any]]:
        """The number of jobs of *vo* matching the filters, per distinct value of the
        grouping."""
        names = list(dict.fromkeys(attribute_name(g) for g in request.grouping))
        filters = self._filters(request.search)
        cols = [jobs.c[n] for n in names]

        def tx(conn: Connection) -> Any:
            where = self._where(conn, vo, filters)
            rows = conn.execute(
                select(*cols, func.count().label("count"))
                .where(where)
                .group_by(*cols)
                .order_by(*cols)
            )
            return [
                {
                    **{n: _json_value(v) for n, v in zip(names, row[:-1], strict=True)},
                    "count": row[-1],
                }
                for row in rows
            ]

        return await self.engines.read(tx)

    # -- history -----------------------------------------------------------------

    async def history(self, job_id: int, *, vo: str) -> list[StatusHistoryEntry]:
        """The status changes of a job of *vo*, oldest first (ObjectNotFoundError if
        unknown, or of another VO)."""

        def tx(conn: Connection) -> Any:
            exists = conn.execute(
                select(jobs.c.id).where(jobs.c.id == job_id, jobs.c.vo == vo)
            ).first()
            if exists is None:
                return None
            return [
                StatusHistoryEntry(
                    status=h.status,
                    minor_status=h.minor_status,
                    timestamp=h.timestamp,
                    source=h.source,
                )
                for h in conn.execute(
                    select(job_status_history)
                    .where(job_status_history.c.job_id == job_id)
                    .order_by(job_status_history.c.id)
                )
            ]

        entries = await self.engines.read(tx)
        if entries is None:
            raise ObjectNotFoundError(f"job {job_id} does not exist")
        return entries

    # -- status updates ------------------------------------------------------------

    @staticmethod
    def refusal(job_id: int, old: JobStatus, new: JobStatus) -> str | None:
        """Why *old* -> *new* is refused for a user, or None if it is allowed."""
        if not is_legal_transition(old, new):
            allowed = ", ".join(sorted(TRANSITIONS[old])) or "none"
            return f"job {job_id}: {old} -> {new} is not a legal transition (from {old}: {allowed})"
        if new in OWN_ROUTE:
            route = OWN_ROUTE[new].format(id=job_id)
            return f"job {job_id}: {new} is set by {route}, not by a status update"
        if new not in SETTABLE:
            return (
                f"job {job_id}: {new} is set by DiracX itself (the worker or the scheduler); "
                f"a status update may set {', '.join(sorted(SETTABLE))}"
            )
        return None

    async def set_status(
        self, updates: Mapping[int, JobStatusUpdate], *, actor: Actor
    ) -> JobStatusUpdateResponse:
        """Apply each job's change if it is legal, else say why: each job is changed whole
        (status, minor status, history, effects) or not at all, in one transaction. A job
        of another VO "does not exist"; another user's is refused without VOAdmin."""
        p = self._pipelines

        def tx(conn: Connection) -> Any:
            result = JobStatusUpdateResponse()
            for job_id in sorted(updates):
                change = updates[job_id]
                row = conn.execute(
                    select(jobs.c.status, jobs.c.minor_status, jobs.c.owner)
                    .where(jobs.c.id == job_id, jobs.c.vo == actor.vo)
                    .with_for_update()
                ).first()
                if row is None:
                    result.failed[job_id] = f"job {job_id} does not exist"
                    continue
                if not actor.may_act_on(row.owner):
                    result.failed[job_id] = str(
                        actor.refuse(f"job {job_id}", row.owner, "change the status of")
                    )
                    continue
                old = JobStatus(row.status)
                new = change.Status or old
                minor = change.MinorStatus if change.MinorStatus is not None else row.minor_status
                if new == old:  # only the minor status changes
                    if old is S.DELETED:
                        result.failed[job_id] = f"job {job_id} is Deleted: it cannot change"
                        continue
                    ts = now()
                    conn.execute(
                        update(jobs)
                        .where(jobs.c.id == job_id)
                        .values(minor_status=minor, updated=ts)
                    )
                    p._history(conn, [job_id], old, minor, change.Source, ts)
                else:
                    why = self.refusal(job_id, old, new)
                    if why is not None:
                        result.failed[job_id] = why
                        continue
                    changed = p._set_status(conn, [job_id], [old], new, minor, change.Source)
                    if new in (S.FAILED, S.KILLED):  # the jobs that need it never run
                        verb = "was killed" if new is S.KILLED else "failed"
                        p._fail_dependents(conn, changed, now(), verb=verb, source=change.Source)
                result.success[job_id] = JobStatusResult(status=new, minor_status=minor)
            return result

        return await self.engines.write(tx)

    # -- delete and reschedule -------------------------------------------------------

    def _locked(self, conn: Connection, job_id: int, actor: Actor, verb: str) -> Any:
        """The job's row (with its derivation's body), locked, if *actor* may *verb* it:
        ObjectNotFoundError if it does not exist or is of another VO, ForbiddenError if
        it is another user's and *actor* lacks VOAdmin."""
        row = conn.execute(
            select(jobs, derivations.c.body)
            .join(derivations, derivations.c.dref == jobs.c.dref)
            .where(jobs.c.id == job_id, jobs.c.vo == actor.vo)
            .with_for_update(of=jobs)
        ).first()
        if row is None:
            raise ObjectNotFoundError(f"job {job_id} does not exist")
        if not actor.may_act_on(row.owner):
            raise actor.refuse(f"job {job_id}", row.owner, verb)
        return row

    async def delete(self, job_id: int, *, actor: Actor) -> JobActionResponse:
        """An ended job (Done, Failed, Killed) -> Deleted. The row and its history stay
        (realizations and pipelines refer to it); searches can leave it out by status."""
        minor = f"Deleted by {actor.sub}"[:512]

        def tx(conn: Connection) -> Any:
            row = self._locked(conn, job_id, actor, "delete")
            if row.status == S.DELETED:
                raise ConflictError(f"job {job_id} is already deleted")
            if row.status not in ENDED:
                raise ConflictError(
                    f"job {job_id} is {row.status}: only an ended job (Done, Failed, Killed) "
                    "can be deleted; kill it first"
                )
            self._pipelines._set_status(conn, [job_id], [S(row.status)], S.DELETED, minor, "user")
            return JobActionResponse(id=job_id, status=S.DELETED, minor_status=minor)

        return await self.engines.write(tx)

    async def reschedule(
        self, job_id: int, *, actor: Actor, admit: Admit | None = None
    ) -> tuple[JobActionResponse, list[QueuedJob]]:
        """A Failed, Killed or Stalled job -> Rescheduled -> Waiting (Checking while an
        input is still being built), with a new attempt and a fresh retry budget.
        Returns the job, and what to queue. ConflictError if it cannot be rescheduled:
        its status, an input that failed or was killed (reschedule that first), or
        secrets its build needs, which were dropped when it ended. *admit* (see
        ``PipelineDB.submit``) may refuse a job that ended coming back to life."""

        def tx(conn: Connection) -> Any:
            if admit is not None:
                lock_vo(conn, actor.vo)
            row = self._locked(conn, job_id, actor, "reschedule")
            old = S(row.status)
            if old not in RESCHEDULABLE:
                raise ConflictError(
                    f"job {job_id} is {old}: only Failed, Killed or Stalled jobs can be rescheduled"
                )
            why = _needs_secrets(row)
            if why:
                raise ConflictError(why)
            pending = 0
            for inp in self._inputs(conn, [job_id])[job_id]:
                if _available(inp):
                    continue
                if inp.status in (S.FAILED, S.KILLED, S.DELETED):
                    raise ConflictError(
                        f"job {job_id} needs input job {inp.id} ({inp.name!r}), which is "
                        f"{inp.status}: reschedule that one first"
                    )
                pending += 1
            if admit is not None:
                running = self._pipelines._running_jobs(conn, actor.vo)
                admit(running, 1 if old in FINAL_STATUSES else 0)
            minor = f"Rescheduled by {actor.sub}"[:512]
            (new,) = self._revive(conn, {job_id: pending}, [old], minor).values()
            queued = [QueuedJob(job_id, row.queue)] if new is S.WAITING else []
            return JobActionResponse(id=job_id, status=new, minor_status=minor), queued

        return await self.engines.write(tx)

    def _inputs(self, conn: Connection, job_ids: Sequence[int]) -> dict[int, list[Any]]:
        """Per job, its input jobs (id, name, status, rref), locked: their status decides
        whether the job waits for them."""
        found: dict[int, list[Any]] = defaultdict(list)
        for part in chunks(sorted(job_ids)):
            rows = conn.execute(
                select(
                    job_edges.c.job_id.label("of"),
                    jobs.c.id,
                    jobs.c.name,
                    jobs.c.status,
                    jobs.c.rref,
                )
                .select_from(jobs)
                .join(job_edges, job_edges.c.input_job_id == jobs.c.id)
                .where(job_edges.c.job_id.in_(part))
                .order_by(jobs.c.id)
                .with_for_update(of=jobs)
            )
            for r in rows:
                found[r.of].append(r)
        return found

    def _revive(
        self, conn: Connection, pending: Mapping[int, int], old: Sequence[JobStatus], minor: str
    ) -> dict[int, JobStatus]:
        """Ended (or Stalled) jobs -> Rescheduled -> Waiting, or Checking while *pending*
        (per job) of their inputs are being built: a new attempt, a fresh retry budget,
        no worker. Returns the status each job now has."""
        by_count: dict[int, list[int]] = defaultdict(list)
        for job_id, n in pending.items():
            by_count[n].append(job_id)
        now_in: dict[int, JobStatus] = {}
        for n, ids in sorted(by_count.items()):
            new = S.CHECKING if n else S.WAITING
            changed = self._pipelines._set_status(
                conn,
                sorted(ids),
                old,
                new,
                minor,
                "user",
                via=[(S.RESCHEDULED, minor)],
                attempt=jobs.c.attempt + 1,
                failures=0,
                pending_inputs=n,
                worker=None,
                heartbeat=None,
                not_before=None,
            )
            now_in.update((job_id, new) for job_id in changed)
        return now_in

    # -- pipeline retry ------------------------------------------------------------------

    async def retry_pipeline(
        self, pipeline_id: int, *, actor: Actor, admit: Admit | None = None
    ) -> RetryOutcome | None:
        """Reschedule the Failed and Killed jobs of a pipeline of *actor*'s VO (None if it
        has no such pipeline) as ``reschedule`` does each one, in one transaction: those
        that failed for their own reasons and those that failed because an input did.
        A job whose input is retried with it waits for it (Checking).

        ForbiddenError for another user's pipeline without VOAdmin. Jobs left as they are
        (in ``skipped``, with the reason): another user's (joined at submission) without
        VOAdmin, one whose secrets were dropped, one that needs an input that stays failed.
        *admit* sees every job the retry brings back to life at once."""
        minor = f"Rescheduled by {actor.sub} (retry of pipeline {pipeline_id})"[:512]

        def tx(conn: Connection) -> Any:
            if admit is not None:
                lock_vo(conn, actor.vo)
            found = conn.execute(
                select(pipelines.c.owner).where(
                    pipelines.c.id == pipeline_id, pipelines.c.vo == actor.vo
                )
            ).first()
            if found is None:
                return None
            if not actor.may_act_on(found.owner):
                raise actor.refuse(f"pipeline {pipeline_id}", found.owner, "retry")
            rows = conn.execute(
                select(jobs, derivations.c.body)
                .join(pipeline_stages, pipeline_stages.c.job_id == jobs.c.id)
                .join(derivations, derivations.c.dref == jobs.c.dref)
                .where(
                    pipeline_stages.c.pipeline_id == pipeline_id,
                    jobs.c.status.in_([s.value for s in RETRIED]),
                )
                .order_by(jobs.c.id)
                .with_for_update(of=jobs)
            ).all()
            outcome = RetryOutcome()
            chosen: dict[int, Any] = {}
            for row in rows:
                why = None
                if not actor.may_act_on(row.owner):
                    why = str(actor.refuse(f"job {row.id}", row.owner, "reschedule"))
                why = why or _needs_secrets(row)
                if why:
                    outcome.skipped[row.id] = why
                else:
                    chosen[row.id] = row
            inputs = self._inputs(conn, list(chosen))
            # a job retried needs each input available, live, or retried with it: drop
            # those that need an input that stays failed, until none does
            dropped = True
            while dropped:
                dropped = False
                for job_id in sorted(chosen):
                    stuck = next(
                        (
                            i
                            for i in inputs[job_id]
                            if i.id not in chosen
                            and not _available(i)
                            and i.status in (S.FAILED, S.KILLED, S.DELETED)
                        ),
                        None,
                    )
                    if stuck is not None:
                        outcome.skipped[job_id] = (
                            f"job {job_id} needs input job {stuck.id} ({stuck.name!r}), which "
                            f"is {stuck.status} and is not retried"
                        )
                        del chosen[job_id]
                        dropped = True
            if not chosen:
                return outcome
            if admit is not None:
                admit(self._pipelines._running_jobs(conn, actor.vo), len(chosen))
            pending = {j: sum(not _available(i) for i in inputs[j]) for j in chosen}
            now_in = self._revive(conn, pending, list(RETRIED), minor)
            for job_id, status in sorted(now_in.items()):
                row = chosen[job_id]
                outcome.retried.append(RetriedJob(id=job_id, name=row.name, status=status))
                if status is S.WAITING:
                    outcome.to_queue.append(QueuedJob(job_id, row.queue))
            return outcome

        return await self.engines.write(tx)

    # -- heartbeats ------------------------------------------------------------------------

    async def heartbeat(self, job_ids: Iterable[int], *, actor: Actor) -> JobHeartbeatResponse:
        """Record that the Running (or Completing) jobs among *job_ids* are alive, as a
        worker's heartbeat does (``PipelineDB.heartbeat``), for a pilot that reports
        through the API: the caller's own jobs, or any of its VO's with VOAdmin. The
        others are in ``failed`` with the reason (one of another VO "does not exist")."""
        ids = sorted(set(job_ids))
        ts = now()

        def tx(conn: Connection) -> Any:
            rows: dict[int, Any] = {}
            for part in chunks(ids):
                query = select(jobs.c.id, jobs.c.status, jobs.c.owner).where(
                    jobs.c.id.in_(part), jobs.c.vo == actor.vo
                )
                rows.update((r.id, r) for r in conn.execute(query.with_for_update()))
            result = JobHeartbeatResponse()
            for job_id in ids:
                row = rows.get(job_id)
                if row is None:
                    result.failed[job_id] = f"job {job_id} does not exist"
                elif not actor.may_act_on(row.owner):
                    refusal = actor.refuse(f"job {job_id}", row.owner, "report a heartbeat of")
                    result.failed[job_id] = str(refusal)
                elif row.status not in BEATING:
                    result.failed[job_id] = (
                        f"job {job_id} is {row.status}: only a Running or Completing job "
                        "has heartbeats"
                    )
                else:
                    result.success.append(job_id)
            for part in chunks(result.success):
                conn.execute(update(jobs).where(jobs.c.id.in_(part)).values(heartbeat=ts))
            return result

        return await self.engines.write(tx)


def _available(inp: Any) -> bool:
    """An input job whose realization exists (Done; or Deleted after it was built)."""
    return bool(inp.status == S.DONE or (inp.status == S.DELETED and inp.rref))


def _needs_secrets(row: Any) -> str | None:
    """Why a job (a jobs row with its derivation's body) cannot be built again: the
    secrets its build needs were dropped when it ended."""
    try:
        secrets = _with_scheduling(row).builder_spec().secret_names()
    except ValueError:
        secrets = set()
    if not secrets:
        return None
    return (
        f"job {row.id} needs secrets ({', '.join(sorted(secrets))}), which were dropped when "
        "it ended: submit its pipeline again"
    )
