"""Queues and resources in the database: what a worker may claim, what nobody serves.

On SQLite and on a real PostgreSQL (``db_url``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, select, update

from diracx.core.broker import QueuedJob, WorkerCapacity
from diracx.core.derivation import Derivation, PipelineSubmission, Scheduling, plan_order
from diracx.core.settings import ServiceSettings
from diracx.db.migrate import upgrade
from diracx.db.pipelines import PipelineDB
from diracx.db.schema import job_status_history, jobs, workers


@pytest.fixture
async def db(db_url):
    upgrade(db_url)
    database = PipelineDB.from_url(db_url)
    yield database
    await database.close()


def job(name: str, **scheduling: Any) -> Derivation:
    return Derivation(
        name=name,
        builder={"executor": "process", "argv": ["true", name]},
        scheduling=Scheduling(**scheduling),
    )


async def submit(db: PipelineDB, *drvs: Derivation) -> dict[str, int]:
    """Submit independent jobs; their ids by name."""
    sub = PipelineSubmission(derivations={d.dref: d for d in drvs}, targets=[d.dref for d in drvs])
    outcome = await db.submit("me", plan_order(sub), sub.targets)
    names = {d.dref: d.name for d in drvs}
    return {names[s.dref]: s.job_id for s in outcome.pipeline.stages if s.job_id is not None}


async def minor(db: PipelineDB, job_id: int) -> tuple[str, str]:
    info = await db.get_job(job_id)
    assert info is not None
    return info.status, info.minor_status


async def history(db: PipelineDB, job_id: int) -> list[tuple[str, str]]:
    def tx(conn: Connection) -> Any:
        rows = conn.execute(
            select(job_status_history.c.status, job_status_history.c.minor_status)
            .where(job_status_history.c.job_id == job_id)
            .order_by(job_status_history.c.id)
        )
        return [tuple(r) for r in rows]

    return await db.engines.read(tx)


async def age_worker(db: PipelineDB, worker: str, seconds: float) -> None:
    def tx(conn: Connection) -> None:
        conn.execute(
            update(workers)
            .where(workers.c.id == worker)
            .values(last_seen=datetime.now(UTC) - timedelta(seconds=seconds))
        )

    await db.engines.write(tx)


async def test_submit_and_finish_outcomes_carry_queues(db: PipelineDB) -> None:
    a = job("a", queue="gpu", gpus=1)
    b = Derivation(
        name="b",
        builder={"executor": "process", "argv": ["true"]},
        inputs={"a": {"drv": a.dref}},
        scheduling=Scheduling(queue="site-x"),
    )
    c = job("c")
    sub = PipelineSubmission(derivations={d.dref: d for d in (a, b, c)}, targets=[b.dref, c.dref])
    outcome = await db.submit("me", plan_order(sub), sub.targets)
    assert len(outcome.ready) == 2
    assert sorted(q for _, q in outcome.to_queue()) == ["default", "gpu"]
    ids = {s.dref: s.job_id for s in outcome.pipeline.stages}
    assert outcome.queues[ids[a.dref]] == "gpu"

    await db.register_worker("g", "h", 1, WorkerCapacity(queues=("gpu",), slots=1, gpus=1))
    [claimed] = await db.claim(outcome.ready, "g", start=True)
    assert claimed.id == ids[a.dref]
    assert claimed.derivation.scheduling == a.scheduling  # as submitted, though not hashed
    assert claimed.derivation.dref == a.dref


async def test_claim_takes_only_what_the_worker_serves(db: PipelineDB) -> None:
    ids = await submit(
        db,
        job("plain"),
        job("big", cpus=4),
        job("fat", memory_mb=16384),
        job("gpu", queue="gpu", gpus=1),
        job("two-gpus", queue="gpu", gpus=2),
        job("site", queue="site-x"),
        job("fits", cpus=2, memory_mb=8192),
    )
    cap = WorkerCapacity(queues=("default", "gpu"), slots=2, memory_mb=8192, gpus=1)
    await db.register_worker("w", "host", 1, cap)
    everything = sorted(ids.values())
    outcome = await db.claim_batch(everything, "w")
    assert sorted(c.id for c in outcome.claimed) == sorted([ids["plain"], ids["fits"], ids["gpu"]])
    assert [c.cpus for c in outcome.claimed if c.id == ids["fits"]] == [2]
    for name in ("big", "fat", "two-gpus", "site"):
        assert (await minor(db, ids[name]))[0] == "Waiting"
    # Nobody else serves them: the claim said why, and passed none on.
    assert outcome.passed == []
    assert await minor(db, ids["big"]) == (
        "Waiting",
        "No worker has 4 slots for this job (largest: 2)",
    )
    assert await minor(db, ids["site"]) == ("Waiting", "No worker serves queue 'site-x'")
    assert await minor(db, ids["fat"]) == (
        "Waiting",
        "No worker has 16384 MB of memory for this job (largest: 8192 MB)",
    )

    # A worker that can serve the big one is alive: it is passed on (to be queued again).
    await db.register_worker("big-worker", "host", 2, WorkerCapacity(slots=8))
    again = await db.claim_batch(everything, "w")
    assert again.claimed == []
    assert QueuedJob(ids["big"], "default") in again.passed
    assert ids["site"] not in [j.id for j in again.passed]
    [big] = await db.claim([ids["big"]], "big-worker")
    assert big.cpus == 4
    # A worker that never registered is not filtered (tools, tests).
    assert [c.id for c in await db.claim([ids["site"]], "anonymous")] == [ids["site"]]


async def test_claim_within_a_budget_of_slots(db: PipelineDB) -> None:
    names = ["a", "b", "c", "d", "e"]
    cpus = {"a": 1, "b": 2, "c": 2, "d": 1, "e": 1}
    ids = await submit(db, *(job(n, cpus=cpus[n]) for n in names))
    await db.register_worker("w", "host", 1, WorkerCapacity(slots=4))
    order = [ids[n] for n in names]
    first = await db.claim_batch(order, "w", budget=4)
    # taken while the cpus taken so far are below the budget: 1 + 2 + 2 (the last goes over)
    assert [c.id for c in first.claimed] == [ids["a"], ids["b"], ids["c"]]
    assert first.rest == [ids["d"], ids["e"]]
    second = await db.claim_batch(first.rest, "w", budget=1)
    assert [c.id for c in second.claimed] == [ids["d"]] and second.rest == [ids["e"]]
    third = await db.claim_batch(order, "w", budget=8)  # the others are taken: skipped
    assert [c.id for c in third.claimed] == [ids["e"]] and third.rest == []


async def test_finish_claims_released_jobs_it_can_serve_and_queues_the_rest(
    db: PipelineDB,
) -> None:
    from datetime import UTC, datetime

    from diracx.core.derivation import DrvInput, realization_ref
    from diracx.db.pipelines import BuildSuccess

    root = job("root")
    deps = [
        Derivation(
            name=f"dep-{q}",
            builder={"executor": "process", "argv": ["true", q]},
            inputs={"root": DrvInput(drv=root.dref)},
            scheduling=Scheduling(queue=q),
        )
        for q in ("default", "gpu")
    ]
    sub = PipelineSubmission(
        derivations={d.dref: d for d in (root, *deps)}, targets=[d.dref for d in deps]
    )
    outcome = await db.submit("me", plan_order(sub), sub.targets)
    await db.register_worker("cpu", "host", 1, WorkerCapacity(slots=4))
    [claimed] = await db.claim(outcome.ready, "cpu", start=True)
    now = datetime.now(UTC)
    rref = realization_ref(claimed.dref, {}, "0" * 64)
    success = BuildSuccess(claimed.id, claimed.dref, "0" * 64, {}, rref, None, now, now)
    finished = await db.finish("cpu", [success], [], claim_released=4)
    assert [c.derivation.name for c in finished.claimed] == ["dep-default"]
    [gpu_job] = finished.released  # not its queue: left to be queued, to "gpu"
    assert finished.to_queue() == [QueuedJob(gpu_job, "gpu")]
    # and nobody serves "gpu": it says so at once
    assert await minor(db, gpu_job) == ("Waiting", "No worker serves queue 'gpu'")


async def test_note_unserved_says_why_and_undoes_it(db: PipelineDB) -> None:
    ids = await submit(db, job("plain"), job("gpu", queue="gpu", gpus=1), job("big", cpus=4))
    assert await db.note_unserved(30) == []
    assert await minor(db, ids["plain"]) == ("Waiting", "No worker serves queue 'default'")
    assert await minor(db, ids["gpu"]) == ("Waiting", "No worker serves queue 'gpu'")
    rows = await history(db, ids["plain"])
    await db.note_unserved(30)  # no change: no new history row
    assert await history(db, ids["plain"]) == rows

    await db.register_worker("w", "host", 1, WorkerCapacity(slots=2))
    back = await db.note_unserved(30)
    assert back == [QueuedJob(ids["plain"], "default")]  # to be queued again
    assert await minor(db, ids["plain"]) == ("Waiting", "Ready")
    assert await minor(db, ids["big"]) == (
        "Waiting",
        "No worker has 4 slots for this job (largest: 2)",
    )
    assert (await history(db, ids["plain"]))[-2:] == [
        ("Waiting", "No worker serves queue 'default'"),
        ("Waiting", "Ready"),
    ]

    # A GPU worker, but with too few GPUs; then a worker that went quiet; then one that stopped.
    await db.register_worker("g1", "host", 2, WorkerCapacity(queues=("gpu",), slots=1))
    await db.note_unserved(30)
    assert await minor(db, ids["gpu"]) == (
        "Waiting",
        "No worker has 1 GPUs for this job (largest: 0)",
    )
    await db.register_worker("g2", "host", 3, WorkerCapacity(queues=("gpu",), slots=1, gpus=2))
    await age_worker(db, "g2", 120)
    await db.note_unserved(30)
    assert (await minor(db, ids["gpu"]))[1].startswith("No worker has 1 GPUs")
    assert await db.note_unserved(600) == [QueuedJob(ids["gpu"], "gpu")]  # not stale for 600 s
    await db.mark_workers_stopped(worker_id="g2")
    await db.note_unserved(600)
    assert (await minor(db, ids["gpu"]))[1].startswith("No worker has 1 GPUs")

    # The worker stops: its jobs are unserved again; a job's own minor status is not touched.
    def set_minor(conn: Connection) -> None:
        conn.execute(update(jobs).where(jobs.c.id == ids["plain"]).values(minor_status="Retry 1"))

    await db.engines.write(set_minor)
    await db.mark_workers_stopped(worker_id="w")
    await db.note_unserved(30)
    assert await minor(db, ids["plain"]) == ("Waiting", "No worker serves queue 'default'")
    await db.register_worker("w2", "host", 4, WorkerCapacity(slots=1))
    await db.note_unserved(30)
    assert await minor(db, ids["plain"]) == ("Waiting", "Ready")


async def test_register_worker_records_its_capacity(db: PipelineDB) -> None:
    cap = WorkerCapacity(queues=("default", "gpu"), slots=3, memory_mb=16384, gpus=1)
    await db.register_worker("w", "host", 42, cap)

    def tx(conn: Connection) -> Any:
        return conn.execute(select(workers).where(workers.c.id == "w")).one()

    row = await db.engines.read(tx)
    assert (json.loads(row.queues), row.slots, row.memory_mb, row.gpus, row.stopped) == (
        ["default", "gpu"],
        3,
        16384,
        1,
        None,
    )


async def test_postgresql_pool_follows_the_settings(postgresql_url: str, tmp_path) -> None:
    settings = ServiceSettings(
        data_dir=tmp_path,
        db_url=postgresql_url.replace("postgresql+asyncpg://", "postgresql://"),
        db_pool_size=3,
        db_max_overflow=1,
        db_pool_recycle=600,
    )
    upgrade(settings.resolved_db_url())
    db = PipelineDB.from_settings(settings)
    try:
        pool = db.engines._async.pool
        assert db.engines._async.dialect.driver == "asyncpg"  # postgresql:// means asyncpg
        assert pool.size() == 3 and pool._max_overflow == 1 and pool._recycle == 600  # type: ignore[attr-defined]

        import asyncio

        from sqlalchemy import text

        async def hold() -> None:
            def tx(conn: Connection) -> None:
                conn.execute(text("SELECT pg_sleep(0.3)"))

            await db.engines.read(tx)

        started = asyncio.get_running_loop().time()
        await asyncio.gather(*(hold() for _ in range(8)))
        elapsed = asyncio.get_running_loop().time() - started
        # 4 connections at most (3 + 1 overflow): 8 sleeps of 0.3 s take two rounds
        assert elapsed >= 0.55, elapsed
    finally:
        await db.close()


async def test_requeue_lost_leaves_unserved_jobs_to_note_unserved(db: PipelineDB) -> None:
    """An unserved job's message waits in its queue: sending it again at every
    ``requeue_after`` would only pile up copies there."""
    ids = await submit(db, job("plain"), job("gpu", queue="gpu"))
    await db.register_worker("w", "host", 1, WorkerCapacity(slots=1))
    await db.note_unserved(30)
    assert (await minor(db, ids["gpu"]))[1] == "No worker serves queue 'gpu'"
    assert await db.requeue_lost(older_than=0) == [QueuedJob(ids["plain"], "default")]
    await db.register_worker("g", "host", 2, WorkerCapacity(queues=("gpu",), slots=1))
    assert await db.note_unserved(30) == [QueuedJob(ids["gpu"], "gpu")]
    assert QueuedJob(ids["gpu"], "gpu") in await db.requeue_lost(older_than=0)
