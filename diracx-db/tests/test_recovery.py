"""Retries, lost workers, lost messages and kills: PipelineDB on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from diracx.core.broker import QueuedJob
from diracx.core.derivation import (
    Derivation,
    DrvInput,
    PipelineSubmission,
    Scheduling,
    plan_order,
    realization_ref,
)
from diracx.core.settings import ServiceSettings
from diracx.core.status import TRANSITIONS, JobStatus
from diracx.db.migrate import upgrade
from diracx.db.periodic import run_tick
from diracx.db.pipelines import BuildFailure, BuildSuccess, ClaimedJob, PipelineDB
from diracx.db.schema import jobs

S = JobStatus
EMPTY_TREE = "0" * 64


@pytest.fixture
async def db(db_url):
    upgrade(db_url)
    database = PipelineDB.from_url(db_url)
    yield database
    await database.close()


def drv(name: str, *inputs: Derivation, retries: int = 0, backoff: float = 0.0) -> Derivation:
    return Derivation(
        name=name,
        builder={"executor": "process", "argv": ["true", name]},
        inputs={f"in{i}": DrvInput(drv=d.dref) for i, d in enumerate(inputs)},
        scheduling=Scheduling(retries=retries, retry_backoff=backoff),
    )


async def submit(db: PipelineDB, *drvs: Derivation):
    sub = PipelineSubmission(derivations={d.dref: d for d in drvs}, targets=[drvs[-1].dref])
    return await db.submit("me", plan_order(sub), sub.targets)


def success(job: ClaimedJob) -> BuildSuccess:
    context = {name: [r.rref] for name, r in job.inputs.items()}
    now = datetime.now(UTC)
    rref = realization_ref(job.dref, context, EMPTY_TREE)
    return BuildSuccess(job.id, job.dref, EMPTY_TREE, context, rref, None, now, now)


async def job_row(db: PipelineDB, job_id: int):
    def tx(conn):
        return conn.execute(jobs.select().where(jobs.c.id == job_id)).one()

    return await db.engines.read(tx)


async def set_columns(db: PipelineDB, job_id: int, **values) -> None:
    def tx(conn):
        conn.execute(update(jobs).where(jobs.c.id == job_id).values(**values))

    await db.engines.write(tx)


def assert_legal(history) -> None:
    """Every step of a job's history is a legal DIRAC transition."""
    statuses = [h.status for h in history]
    for old, new in itertools.pairwise(statuses):
        assert new in TRANSITIONS[old], f"{old} -> {new} in {statuses}"


async def ago(seconds: float) -> datetime:
    return datetime.now(UTC) - timedelta(seconds=seconds)


# --------------------------------------------------------------------------- retries


async def test_a_failure_with_retries_left_is_retried_and_then_succeeds(db):
    a = drv("a", retries=2)
    b = drv("b", a)
    outcome = await submit(db, a, b)
    [job] = await db.claim(outcome.ready, "w1", start=True)
    log = "1" * 64
    finished = await db.finish("w1", [], [BuildFailure(job.id, "exit code 1", log)])
    assert finished.released == [job.id]  # no backoff: due at once, queued again
    info = await db.get_job(job.id)
    assert info is not None
    assert info.status == S.WAITING and info.attempt == 2
    assert info.minor_status == "Retry 1 of 2 in 0.0 s: exit code 1"
    assert info.log == log  # the failed attempt's log, until the next attempt ends
    rescheduled = info.history[-2]
    assert rescheduled.status == S.RESCHEDULED
    assert rescheduled.minor_status == f"Attempt 1 failed: exit code 1 (log {log})"
    row = await job_row(db, job.id)
    assert (row.failures, row.reschedules, row.worker) == (1, 0, None)
    pipeline = await db.get_pipeline(outcome.pipeline.id)
    assert pipeline is not None
    assert {s.name: s.status for s in pipeline.stages} == {"a": S.WAITING, "b": S.CHECKING}

    [again] = await db.claim([job.id], "w2", start=True)
    assert again.attempt == 2
    finished = await db.finish("w2", [success(again)], [])
    assert len(finished.released) == 1  # b
    info = await db.get_job(job.id)
    assert info is not None and info.status == S.DONE
    assert_legal(info.history)


async def test_retries_exhausted_fail_the_job_and_its_dependents(db):
    a = drv("a", retries=1)
    b = drv("b", a)
    outcome = await submit(db, a, b)
    [job] = await db.claim(outcome.ready, "w1", start=True)
    await db.finish("w1", [], [BuildFailure(job.id, "exit code 3", None)])
    [job] = await db.claim([job.id], "w1", start=True)
    finished = await db.finish("w1", [], [BuildFailure(job.id, "exit code 4", None)])
    assert finished.released == []
    pipeline = await db.get_pipeline(outcome.pipeline.id)
    assert pipeline is not None and pipeline.status == "Failed"
    stages = {s.name: (s.status, s.minor_status) for s in pipeline.stages}
    assert stages == {"a": (S.FAILED, "exit code 4"), "b": (S.FAILED, "Input 'a' failed")}
    row = await job_row(db, job.id)
    assert (row.failures, row.attempt) == (1, 2)
    info = await db.get_job(job.id)
    assert info is not None
    assert [h.status for h in info.history] == [
        S.RECEIVED,
        S.WAITING,
        S.MATCHED,
        S.RUNNING,
        S.RESCHEDULED,
        S.WAITING,
        S.MATCHED,
        S.RUNNING,
        S.FAILED,
    ]
    assert_legal(info.history)


async def test_backoff_is_respected_and_doubles(db):
    a = drv("a", retries=3, backoff=30.0)
    outcome = await submit(db, a)
    [job] = await db.claim(outcome.ready, "w1", start=True)
    finished = await db.finish("w1", [], [BuildFailure(job.id, "exit code 1", None)])
    assert finished.released == []  # not due yet: the periodic requeue sends it later
    info = await db.get_job(job.id)
    assert info is not None and info.minor_status == "Retry 1 of 3 in 30.0 s: exit code 1"
    row = await job_row(db, job.id)
    assert row.not_before - row.updated == timedelta(seconds=30)
    # Not due: no tick sends it, and a stray message does not get it claimed.
    assert await db.requeue_lost(older_than=0) == []
    assert await db.claim([job.id], "w1", start=True) == []
    # Once due, the next tick sends it (once), and it can be claimed.
    await set_columns(db, job.id, not_before=await ago(1), updated=await ago(31))
    assert await db.requeue_lost(older_than=3600) == [QueuedJob(job.id, "default")]
    assert await db.requeue_lost(older_than=3600) == []
    [job] = await db.claim([job.id], "w1", start=True)
    await db.finish("w1", [], [BuildFailure(job.id, "exit code 1", None)])
    row = await job_row(db, job.id)
    assert row.not_before - row.updated == timedelta(seconds=60)
    info = await db.get_job(job.id)
    assert info is not None and info.minor_status == "Retry 2 of 3 in 60.0 s: exit code 1"


async def test_a_result_from_a_worker_that_no_longer_holds_the_job_is_ignored(db):
    a = drv("a", retries=1)
    outcome = await submit(db, a)
    [job] = await db.claim(outcome.ready, "w1", start=True)
    await db.finish("w2", [], [BuildFailure(job.id, "exit code 1", None)])  # not w2's job
    info = await db.get_job(job.id)
    assert info is not None and info.status == S.RUNNING and info.worker == "w1"


# --------------------------------------------------------------------------- lost workers


async def test_a_job_without_heartbeat_is_stalled_then_rescheduled(db):
    a = drv("a")
    outcome = await submit(db, a)
    [job] = await db.claim(outcome.ready, "w1", start=True)
    assert (await db.stall_lost(60)).rescheduled == []  # a fresh heartbeat
    await db.heartbeat([job.id], worker="w1")
    assert (await db.stall_lost(60)).rescheduled == []
    await set_columns(db, job.id, heartbeat=await ago(61))
    stall = await db.stall_lost(60, max_reschedules=3, backoff=0.0)
    assert stall.rescheduled == [job.id] and stall.failed == []
    assert stall.due == [QueuedJob(job.id, "default")]
    info = await db.get_job(job.id)
    assert info is not None
    assert info.status == S.WAITING and info.attempt == 2 and info.worker is None
    assert [h.status for h in info.history][-4:] == [
        S.RUNNING,
        S.STALLED,
        S.RESCHEDULED,
        S.WAITING,
    ]
    assert info.history[-3].minor_status == "No heartbeat from worker w1 for 60 s"
    assert info.minor_status == "Reschedule 1 of 3 in 0.0 s: no heartbeat from worker w1 for 60 s"
    assert_legal(info.history)
    row = await job_row(db, job.id)
    assert (row.reschedules, row.failures) == (1, 0)
    assert await db.held_by("w1", [job.id]) == set()  # w1 would stop its build now


async def test_reschedule_backoff_and_limit(db):
    a = drv("a")
    b = drv("b", a)
    outcome = await submit(db, a, b)
    job_id = outcome.ready[0]
    for n in (1, 2):
        assert len(await db.claim([job_id], f"w{n}", start=True)) == 1
        await set_columns(db, job_id, heartbeat=await ago(100))
        stall = await db.stall_lost(60, max_reschedules=2, backoff=10.0)
        assert stall.rescheduled == [job_id] and stall.due == []
        row = await job_row(db, job_id)
        delay = (row.not_before - row.updated).total_seconds()
        assert delay == pytest.approx(10.0 * 2 ** (n - 1), abs=0.5)
        assert row.reschedules == n
        await set_columns(db, job_id, not_before=await ago(1))
    assert len(await db.claim([job_id], "w3", start=True)) == 1
    await set_columns(db, job_id, heartbeat=await ago(100))
    stall = await db.stall_lost(60, max_reschedules=2, backoff=10.0)
    assert stall.rescheduled == [] and len(stall.failed) == 2  # a, and b that needs it
    pipeline = await db.get_pipeline(outcome.pipeline.id)
    assert pipeline is not None
    stages = {s.name: (s.status, s.minor_status) for s in pipeline.stages}
    assert stages["a"] == (
        S.FAILED,
        "Lost its worker 3 times (limit 2): no heartbeat from worker w3 for 60 s",
    )
    assert stages["b"] == (S.FAILED, "Input 'a' failed")
    info = await db.get_job(job_id)
    assert info is not None
    assert_legal(info.history)


async def test_a_lost_worker_does_not_count_against_retries(db):
    a = drv("a", retries=1)
    outcome = await submit(db, a)
    [job] = await db.claim(outcome.ready, "w1", start=True)
    await set_columns(db, job.id, heartbeat=await ago(100))
    await db.stall_lost(60, max_reschedules=3)
    [job] = await db.claim([job.id], "w2", start=True)
    await db.finish("w2", [], [BuildFailure(job.id, "exit code 1", None)])
    info = await db.get_job(job.id)
    assert info is not None
    assert info.status == S.WAITING and info.minor_status.startswith("Retry 1 of 1 in")
    row = await job_row(db, job.id)
    assert (row.failures, row.reschedules, row.attempt) == (1, 1, 3)


async def test_a_stopped_worker_loses_its_jobs_at_once(db):
    a, b = drv("a"), drv("b")
    first = await submit(db, a)
    second = await submit(db, b)
    await db.register_worker("w1", "host-1", 101)
    await db.register_worker("w2", "host-2", 101)
    [job_a] = await db.claim(first.ready, "w1", start=True)
    [job_b] = await db.claim(second.ready, "w2", start=True)
    assert await db.mark_workers_stopped(hostname="host-1", pid=101) == ["w1"]
    assert await db.mark_workers_stopped(hostname="host-1") == []  # already marked
    stall = await db.stall_lost(3600)
    assert stall.rescheduled == [job_a.id]
    info = await db.get_job(job_a.id)
    assert info is not None and info.history[-3].minor_status == "Worker w1 stopped"
    info = await db.get_job(job_b.id)
    assert info is not None and info.status == S.RUNNING


async def test_lost_messages_are_sent_again_but_not_at_every_tick(db):
    outcome = await submit(db, drv("a"))
    [job_id] = outcome.ready
    assert await db.requeue_lost(older_than=60) == []  # just queued
    await set_columns(db, job_id, updated=await ago(61))
    assert await db.requeue_lost(older_than=60) == [QueuedJob(job_id, "default")]
    assert await db.requeue_lost(older_than=60) == []
    assert await db.requeue_lost(older_than=0) == [QueuedJob(job_id, "default")]


async def test_a_tick_recovers_lost_workers_and_messages(db):
    a, b = drv("a"), drv("b")
    held = await submit(db, a)
    waiting = await submit(db, b)
    await db.register_worker("dead", "host", 1)
    [job] = await db.claim(held.ready, "dead", start=True)
    await db.mark_workers_stopped(worker_id="dead")
    sent: list[list[QueuedJob]] = []

    async def send(batch):
        sent.append(list(batch))

    settings = ServiceSettings(reschedule_backoff=100.0)
    report = await run_tick(db, settings, send, recovering=True)
    assert report.rescheduled == [job.id]
    assert sent == [[QueuedJob(job.id, "default"), QueuedJob(waiting.ready[0], "default")]]
    report = await run_tick(db, settings, send)  # nothing left to do
    assert report.rescheduled == [] and len(sent) == 1


# --------------------------------------------------------------------------- kill


async def test_kill_a_waiting_job_fails_its_dependents(db):
    a = drv("a")
    b = drv("b", a)
    c = drv("c", b)
    outcome = await submit(db, a, b, c)
    [a_id] = outcome.ready
    killed = await db.kill_jobs([a_id], "Killed by me")
    ids = {s.name: s.job_id for s in outcome.pipeline.stages}
    assert killed.killed == [a_id] and killed.failed == sorted([ids["b"], ids["c"]])
    pipeline = await db.get_pipeline(outcome.pipeline.id)
    assert pipeline is not None and pipeline.status == "Failed"
    stages = {s.name: (s.status, s.minor_status) for s in pipeline.stages}
    assert stages == {
        "a": (S.KILLED, "Killed by me"),
        "b": (S.FAILED, "Input 'a' was killed"),
        "c": (S.FAILED, "Input 'b' failed"),
    }
    assert (await db.kill_jobs([a_id])).killed == []  # already ended
    assert await db.claim([a_id], "w1") == []


async def test_a_killed_running_job_keeps_its_status_when_its_build_ends(db):
    a = drv("a", retries=2)
    outcome = await submit(db, a)
    [job] = await db.claim(outcome.ready, "w1", start=True)
    assert (await db.kill_jobs([job.id], "Killed")).killed == [job.id]
    assert await db.held_by("w1", [job.id]) == set()
    await db.finish("w1", [], [BuildFailure(job.id, "killed by signal SIGKILL", None)])
    await db.finish("w1", [success(job)], [])
    info = await db.get_job(job.id)
    assert info is not None and info.status == S.KILLED and info.rref is None
    assert [h.status for h in info.history][-2:] == [S.RUNNING, S.KILLED]
    assert_legal(info.history)


async def test_kill_a_pipeline(db):
    a = drv("a")
    b = drv("b", a)
    outcome = await submit(db, a, b)
    [job] = await db.claim(outcome.ready, "w1", start=True)
    killed = await db.kill_pipeline(outcome.pipeline.id, "Pipeline killed")
    assert killed is not None
    assert killed.killed == sorted(s.job_id for s in outcome.pipeline.stages)
    assert killed.failed == []  # b is the pipeline's own: killed, not failed
    pipeline = await db.get_pipeline(outcome.pipeline.id)
    assert pipeline is not None and pipeline.status == "Failed"
    assert {s.status for s in pipeline.stages} == {S.KILLED}
    events = await db.pipeline_events(outcome.pipeline.id)
    assert events is not None and events.finished
    again = await db.kill_pipeline(outcome.pipeline.id)
    assert again is not None and again.killed == []
    assert await db.kill_pipeline(999) is None
    assert job.id in killed.killed
