"""Queues and resources with real worker processes, on Redis and on the filesystem broker.

- a stage lands only on a worker that serves its queue (the worker recorded on the job);
- a job for a queue nobody serves waits, says why, and runs as soon as a worker
  serving that queue starts: its message waited in the broker (both transports);
- a job with ``cpus=N`` takes N of a worker's slots; one that needs more slots than
  any worker has waits and says so.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, select

from diracx.core.derivation import (
    Derivation,
    DrvInput,
    PipelineSubmission,
    Scheduling,
    plan_order,
)
from diracx.core.settings import ServiceSettings
from diracx.db.migrate import upgrade
from diracx.db.pipelines import PipelineDB
from diracx.db.schema import workers
from diracx.routers.queue import CeleryJobQueue
from diracx.tasks.runtime import WeightedSlots

pytestmark = pytest.mark.timeout(180)
FINAL = {"Done", "Failed", "Killed"}


class Workers:
    """Worker processes (``python -m diracx.tasks worker``) of one test; all stopped after."""

    def __init__(self, settings: ServiceSettings, db: PipelineDB) -> None:
        self.settings = settings
        self.db = db
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DIRACX_")}
        env["DIRACX_DATA_DIR"] = str(self.settings.data_dir)
        env["DIRACX_DB_URL"] = self.settings.resolved_db_url()
        if self.settings.broker_url:
            env["DIRACX_BROKER_URL"] = self.settings.broker_url
        return env

    async def start(self, *args: str) -> str:
        """Start a worker with these options; return its id once it has registered."""
        log = open(self.settings.data_dir / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "diracx.tasks", "worker", "--loglevel", "INFO", *args],
            env=self.env(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert proc.poll() is None, self.log(len(self.procs) - 1)
            worker_id = await self.registered(proc.pid)
            if worker_id is not None:
                return worker_id
            await asyncio.sleep(0.1)
        raise AssertionError(f"the worker did not register: {self.log(len(self.procs) - 1)}")

    async def registered(self, pid: int) -> str | None:
        def tx(conn: Connection) -> Any:
            return conn.execute(select(workers.c.id).where(workers.c.pid == pid)).scalar()

        return await self.db.engines.read(tx)

    def log(self, i: int) -> str:
        return (self.settings.data_dir / f"worker-{i}.log").read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
async def service(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """Settings, a migrated database and a Workers starter, for the broker of the param."""
    broker, db_url = request.param
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if broker == "redis":
        broker_url: str | None = request.getfixturevalue("fresh_redis_url")
    else:
        broker_url = None  # kombu's filesystem transport in data_dir/broker
    if db_url == "postgresql":
        url: str = request.getfixturevalue("fresh_postgresql_url")
    else:
        url = f"sqlite+aiosqlite:///{data_dir / 'diracx.db'}"
    settings = ServiceSettings(data_dir=data_dir, db_url=url, broker_url=broker_url)
    upgrade(url)
    db = PipelineDB.from_settings(settings)
    started = Workers(settings, db)
    queue = CeleryJobQueue(settings)
    try:
        yield settings, db, started, queue
    finally:
        started.stop()
        queue.close()
        await db.close()


def stage(
    name: str, script: str = "true", inputs: dict[str, Derivation] | None = None, **scheduling: Any
) -> Derivation:
    return Derivation(
        name=name,
        builder={"executor": "process", "argv": ["sh", "-c", f"{script}; echo {name} > $OUT/x"]},
        config={"salt": uuid.uuid4().hex},
        inputs={k: DrvInput(drv=d.dref) for k, d in (inputs or {}).items()},
        scheduling=Scheduling(**scheduling),
    )


async def submit(
    db: PipelineDB, queue: CeleryJobQueue, *drvs: Derivation, one_by_one: bool = False
) -> dict[str, int]:
    """Submit stages and send their messages like the service does (or one per job)."""
    sub = PipelineSubmission(derivations={d.dref: d for d in drvs}, targets=[d.dref for d in drvs])
    outcome = await db.submit("tester", plan_order(sub), sub.targets)
    for batch in [[j] for j in outcome.to_queue()] if one_by_one else [outcome.to_queue()]:
        await asyncio.to_thread(queue.send, batch)
    names = {d.dref: d.name for d in drvs}
    return {names[s.dref]: s.job_id for s in outcome.pipeline.stages if s.job_id is not None}


async def wait_final(db: PipelineDB, job_ids: list[int], timeout: float = 60) -> dict[int, Any]:
    deadline = time.monotonic() + timeout
    while True:
        infos = {j: await db.get_job(j) for j in job_ids}
        if all(i is not None and i.status in FINAL for i in infos.values()):
            return infos
        if time.monotonic() > deadline:
            states = {j: (i.status, i.minor_status) for j, i in infos.items() if i}
            raise AssertionError(f"jobs did not finish: {states}")
        await asyncio.sleep(0.1)


REDIS_POSTGRESQL = pytest.param(("redis", "postgresql"), id="redis-postgresql")
BOTH_TRANSPORTS = [
    pytest.param(("filesystem", "sqlite"), id="filesystem"),
    pytest.param(("redis", "sqlite"), id="redis"),
]


@pytest.mark.parametrize("service", [REDIS_POSTGRESQL], indirect=True)
async def test_stages_land_only_on_workers_that_serve_their_queue(service: Any) -> None:
    _, db, started, queue = service
    cpu = await started.start("--queues", "default", "--slots", "2")
    gpu = await started.start("--queues", "gpu", "--slots", "2", "--gpus", "1")
    ids = await submit(
        db,
        queue,
        *(stage(f"cpu-{i}") for i in range(6)),
        *(stage(f"gpu-{i}", queue="gpu", gpus=1) for i in range(3)),
    )
    infos = await wait_final(db, list(ids.values()))
    by_name = {name: infos[job_id] for name, job_id in ids.items()}
    assert {n: i.status for n, i in by_name.items()} == {n: "Done" for n in ids}
    assert {n: i.worker for n, i in by_name.items() if n.startswith("gpu")} == {
        f"gpu-{i}": gpu for i in range(3)
    }
    assert {n: i.worker for n, i in by_name.items() if n.startswith("cpu")} == {
        f"cpu-{i}": cpu for i in range(6)
    }


@pytest.mark.parametrize("service", [REDIS_POSTGRESQL], indirect=True)
async def test_chains_cross_queues_and_big_jobs_find_a_big_worker(service: Any) -> None:
    """A worker releases a dependent of another queue: it sends it there. A worker given a
    job too big for it passes it on to a worker of the queue that can take it."""
    _, db, started, queue = service
    small = await started.start("--queues", "default", "--slots", "1")
    big = await started.start("--queues", "default,gpu", "--slots", "4", "--gpus", "1")
    prep = stage("prep")
    train = stage("train", inputs={"data": prep}, queue="gpu", gpus=1)
    report = stage("report", inputs={"model": train})
    wide = [stage(f"wide-{i}", "sleep 0.2", cpus=3) for i in range(4)]
    plain = [stage(f"plain-{i}", "sleep 0.2") for i in range(4)]
    # one message per job: both workers get some of the big ones
    ids = await submit(db, queue, prep, train, report, *wide, *plain, one_by_one=True)
    infos = await wait_final(db, list(ids.values()))
    by_name = {name: infos[job_id] for name, job_id in ids.items()}
    assert {n: i.status for n, i in by_name.items()} == {n: "Done" for n in ids}
    assert by_name["train"].worker == big
    assert {by_name[f"wide-{i}"].worker for i in range(4)} == {big}
    assert {i.worker for i in by_name.values()} <= {small, big}
    for info in by_name.values():  # some worker could always serve it: no complaint
        assert not [h for h in info.history if h.minor_status.startswith("No worker")]


@pytest.mark.parametrize("service", [BOTH_TRANSPORTS[1]], indirect=True)
async def test_a_job_too_big_for_every_worker_runs_once_a_big_worker_appears(
    service: Any,
) -> None:
    """The only worker of its queue took its message and could not serve it: it says why;
    when a big enough worker starts, the periodic note_unserved sends it again."""
    _, db, started, queue = service
    await started.start("--queues", "default", "--slots", "1")
    ids = await submit(db, queue, stage("wide", cpus=3), stage("plain"))
    await wait_final(db, [ids["plain"]])
    reason = "No worker has 3 slots for this job (largest: 1)"
    deadline = time.monotonic() + 10
    while (info := await db.get_job(ids["wide"])).minor_status != reason:
        assert time.monotonic() < deadline, info
        await asyncio.sleep(0.1)
    assert info.status == "Waiting"

    big = await started.start("--queues", "default", "--slots", "4")
    await asyncio.sleep(1.0)
    assert (await db.get_job(ids["wide"])).status == "Waiting"  # its message was consumed
    back = await db.note_unserved(60)  # what the periodic tasks do
    assert [j.id for j in back] == [ids["wide"]]
    await asyncio.to_thread(queue.send, back)
    info = (await wait_final(db, [ids["wide"]], timeout=30))[ids["wide"]]
    assert (info.status, info.worker) == ("Done", big)
    assert [h.minor_status for h in info.history if h.status == "Waiting"] == [
        "Ready",
        reason,
        "Ready",
    ]


@pytest.mark.parametrize("service", BOTH_TRANSPORTS, indirect=True)
async def test_a_job_for_an_unserved_queue_waits_then_runs_when_a_worker_serves_it(
    service: Any,
) -> None:
    """Must show 4: the message waits in the broker until a worker serving its queue starts."""
    _, db, started, queue = service
    await started.start("--queues", "default", "--slots", "2")
    ids = await submit(db, queue, stage("plain"), stage("on-site", queue="site-a"))
    done = await wait_final(db, [ids["plain"]])
    assert done[ids["plain"]].status == "Done"
    await asyncio.sleep(1.0)  # the default worker had every chance to take it
    assert await db.note_unserved(60) == []
    info = await db.get_job(ids["on-site"])
    assert (info.status, info.minor_status) == ("Waiting", "No worker serves queue 'site-a'")
    assert [h.status for h in info.history] == ["Received", "Waiting", "Waiting"]

    # No message is sent again: the one from the submission waited in the broker.
    site = await started.start("--queues", "site-a,default", "--slots", "1")
    info = (await wait_final(db, [ids["on-site"]], timeout=30))[ids["on-site"]]
    assert (info.status, info.worker) == ("Done", site)
    statuses = [(h.status, h.minor_status) for h in info.history]
    assert statuses[:3] == [
        ("Received", "Job accepted"),
        ("Waiting", "Ready"),
        ("Waiting", "No worker serves queue 'site-a'"),
    ]
    assert statuses[-1] == ("Done", "Built")


async def span(db: PipelineDB, info: Any) -> tuple[Any, Any]:
    """When the build of a Done job started and finished (its realization)."""
    assert info.status == "Done", info
    [realization] = await db.realizations_of(info.dref)
    return realization.started, realization.finished


def overlap(a: tuple[Any, Any], b: tuple[Any, Any]) -> bool:
    return bool(a[0] < b[1] and b[0] < a[1])


@pytest.mark.parametrize("service", [BOTH_TRANSPORTS[0]], indirect=True)
async def test_a_job_takes_as_many_slots_as_it_has_cpus(service: Any) -> None:
    _, db, started, queue = service
    await started.start("--queues", "default", "--slots", "2")
    ids = await submit(
        db,
        queue,
        stage("small-1", "sleep 0.8"),
        stage("big", "sleep 0.8", cpus=2),
        stage("small-2", "sleep 0.8"),
        stage("huge", cpus=3),
    )
    infos = await wait_final(db, [ids["small-1"], ids["big"], ids["small-2"]])
    spans = {}
    for name in ("small-1", "big", "small-2"):
        spans[name] = await span(db, infos[ids[name]])
    # the big one had both slots to itself (the small ones may run before or after it)
    assert not overlap(spans["big"], spans["small-1"]), spans
    assert not overlap(spans["big"], spans["small-2"]), spans

    # Two small ones alone: both slots at once.
    more = await submit(db, queue, stage("small-3", "sleep 0.8"), stage("small-4", "sleep 0.8"))
    infos = await wait_final(db, list(more.values()))
    assert overlap(*[await span(db, infos[j]) for j in more.values()])

    # Too big for every worker: never claimed, and it says why (no tick needed).
    huge = await db.get_job(ids["huge"])
    assert (huge.status, huge.minor_status) == (
        "Waiting",
        "No worker has 3 slots for this job (largest: 2)",
    )


# ------------------------------------------------------------------ the weighted semaphore


async def test_weighted_slots_serve_in_order() -> None:
    slots = WeightedSlots(4)
    order: list[str] = []

    async def take(name: str, n: int, hold: asyncio.Event) -> None:
        await slots.acquire(n)
        order.append(name)
        await hold.wait()
        slots.release(n)

    events = {name: asyncio.Event() for name in ("a", "b", "c", "d")}
    tasks = [asyncio.create_task(take("a", 3, events["a"]))]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(take("b", 4, events["b"])))  # must wait for a
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(take("c", 1, events["c"])))  # fits, but b is first
    await asyncio.sleep(0.01)
    assert order == ["a"] and slots.free == 1
    events["a"].set()
    await asyncio.sleep(0.01)
    assert order == ["a", "b"] and slots.free == 0
    events["b"].set()
    await asyncio.sleep(0.01)
    assert order == ["a", "b", "c"]
    events["c"].set()
    await asyncio.gather(*tasks)
    assert slots.free == 4


async def test_weighted_slots_survive_cancelled_waiters() -> None:
    slots = WeightedSlots(2)
    await slots.acquire(2)
    waiter = asyncio.create_task(slots.acquire(2))
    small = asyncio.create_task(slots.acquire(1))
    await asyncio.sleep(0.01)
    waiter.cancel()  # the head of the line goes away: the next one is served
    await asyncio.sleep(0.01)
    slots.release(2)
    await asyncio.wait_for(small, 1)
    assert slots.free == 1
    slots.release(1)
    await asyncio.wait_for(slots.acquire(8), 1)  # more than it has: capped, never stuck
    assert slots.free == 0
