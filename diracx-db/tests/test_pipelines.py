"""PipelineDB's state changes, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from diracx.core.derivation import (
    Derivation,
    DrvInput,
    PipelineSubmission,
    plan_order,
    realization_ref,
)
from diracx.core.status import JobStatus
from diracx.db.migrate import upgrade
from diracx.db.pipelines import BuildFailure, BuildSuccess, ClaimedJob, PipelineDB

EMPTY_TREE = "0" * 64


@pytest.fixture
async def db(db_url):
    upgrade(db_url)
    database = PipelineDB.from_url(db_url)
    yield database
    await database.close()


def drv(name: str, *inputs: Derivation) -> Derivation:
    return Derivation(
        name=name,
        builder={"executor": "process", "argv": ["true", name]},
        inputs={f"in{i}": DrvInput(drv=d.dref) for i, d in enumerate(inputs)},
    )


def submission(*drvs: Derivation) -> tuple[list[tuple[str, Derivation]], list[str]]:
    sub = PipelineSubmission(derivations={d.dref: d for d in drvs}, targets=[drvs[-1].dref])
    return plan_order(sub), sub.targets


def success(job: ClaimedJob, output: str = EMPTY_TREE) -> BuildSuccess:
    context = {name: [r.rref] for name, r in job.inputs.items()}
    now = datetime.now(UTC)
    rref = realization_ref(job.dref, context, output)
    return BuildSuccess(job.id, job.dref, output, context, rref, None, now, now)


async def test_chain_releases_dependents_and_claims_them(db):
    a = drv("a")
    b = drv("b", a)
    c = drv("c", b)
    outcome = await db.submit("me", *submission(a, b, c))
    assert outcome.pipeline.counts == {"Waiting": 1, "Checking": 2}
    [job_a] = await db.claim(outcome.ready, "w1", start=True)
    finished = await db.finish("w1", [success(job_a)], [], claim_released=1)
    assert finished.released == []  # b was claimed by w1 in the same transaction
    [job_b] = finished.claimed
    assert job_b.derivation.name == "b"
    assert job_b.inputs["in0"].rref == success(job_a).rref
    info = await db.get_job(job_b.id)
    assert info is not None and info.status == JobStatus.RUNNING
    finished = await db.finish("w1", [success(job_b)], [], claim_released=0)
    assert len(finished.released) == 1 and finished.claimed == []
    pipeline = await db.get_pipeline(outcome.pipeline.id)
    assert pipeline is not None and pipeline.status == "Running"


async def test_claim_is_exclusive(db):
    a = drv("a")
    outcome = await db.submit("me", *submission(a))
    results = await asyncio.gather(*(db.claim(outcome.ready, f"w{i}") for i in range(8)))
    assert sum(len(r) for r in results) == 1


async def test_failure_fails_dependents_naming_the_input(db):
    a = drv("a")
    b = drv("b", a)
    c = drv("c", b)
    outcome = await db.submit("me", *submission(a, b, c))
    [job_a] = await db.claim(outcome.ready, "w1", start=True)
    await db.finish("w1", [], [BuildFailure(job_a.id, "exit code 2", None)])
    pipeline = await db.get_pipeline(outcome.pipeline.id)
    assert pipeline is not None and pipeline.status == "Failed"
    minor = {s.name: (s.status, s.minor_status) for s in pipeline.stages}
    assert minor["a"] == (JobStatus.FAILED, "exit code 2")
    assert minor["b"] == (JobStatus.FAILED, "Input 'a' failed")
    assert minor["c"] == (JobStatus.FAILED, "Input 'b' failed")
    events = await db.pipeline_events(outcome.pipeline.id)
    assert events is not None and events.finished


async def test_realized_derivations_are_reused_and_live_jobs_joined(db):
    a = drv("a")
    b = drv("b", a)
    first = await db.submit("me", *submission(a, b))
    [job_a] = await db.claim(first.ready, "w1", start=True)
    await db.finish("w1", [success(job_a)], [])
    # a is realized, b's job is live (Waiting): a second pipeline reuses one, joins the other
    second = await db.submit("me", *submission(a, b))
    stages = {s.name: s for s in second.pipeline.stages}
    assert stages["a"].cached and stages["a"].rref == success(job_a).rref
    assert stages["b"].job_id == next(s.job_id for s in first.pipeline.stages if s.name == "b")
    assert second.ready == []


async def test_orphans_are_rescheduled(db):
    a = drv("a")
    outcome = await db.submit("me", *submission(a))
    await db.register_worker("dead-worker", "host", 1)
    [job] = await db.claim(outcome.ready, "dead-worker", start=True)
    assert await db.mark_workers_stopped(worker_id="dead-worker") == ["dead-worker"]
    assert (await db.stall_lost(heartbeat_timeout=3600)).rescheduled == [job.id]
    info = await db.get_job(job.id)
    assert info is not None
    assert info.status == JobStatus.WAITING and info.attempt == 2
    assert [h.status for h in info.history][-2:] == [JobStatus.RESCHEDULED, JobStatus.WAITING]
    assert [j.id for j in await db.requeue_lost(older_than=0)] == [job.id]


async def test_a_deterministic_rebuild_adds_no_realization(db):
    a = drv("a")
    first = await db.submit("me", *submission(a))
    [job] = await db.claim(first.ready, "w1", start=True)
    await db.finish("w1", [success(job)], [])
    await db.finish("w1", [success(job)], [])  # a repeated result (e.g. a duplicate message)
    assert len(await db.realizations_of(a.dref)) == 1


async def test_concurrent_submissions_of_new_derivations_make_one_job_each(db, db_url):
    """Eight services submit the same pipeline at the same instant, each through its
    own engine (its own connections): every derivation gets exactly one job, and the
    other pipelines join it. (On PostgreSQL there is no job row to lock before the first
    one exists: a lock per DRef serializes them.)"""
    stages = [drv("root")]
    for i in range(30):
        stages.append(drv(f"s{i}", stages[i // 2]))
    ordered, targets = submission(*stages)
    # Known derivations without a live job or a realization (their first build failed):
    # no row conflicts on insert that would serialize the submissions by chance.
    first = await db.submit("me", ordered, targets)
    [root] = await db.claim(first.ready, "w", start=True)
    await db.finish("w", [], [BuildFailure(root.id, "exit status 1", None)])
    services = [PipelineDB.from_url(db_url) for _ in range(8)]
    try:
        outcomes = await asyncio.gather(*(s.submit("me", ordered, targets) for s in services))
    finally:
        for service in services:
            await service.close()
    job_of = {}
    for outcome in outcomes:
        for stage in outcome.pipeline.stages:
            assert stage.job_id is not None
            assert job_of.setdefault(stage.name, stage.job_id) == stage.job_id, stage.name
    assert len(set(job_of.values())) == len(stages)
    assert sorted(j for o in outcomes for j in o.ready) == [job_of["root"]]
