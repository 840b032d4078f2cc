"""The worker-side guarantees, with real databases, real engines and real kills.

- a claim is exclusive: of several workers claiming the same jobs at once (tasks
  or processes, on SQLite and PostgreSQL), exactly one wins each job;
- Must show 3: an engine killed with SIGKILL in the middle of a pipeline, then the
  same pipeline run again: it completes, what had finished is not rebuilt, and
  there is exactly one realization per derivation;
- Waiting jobs whose message was lost are queued again when the engine starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from diracx.api import Progress, Stage, command, connect, instantiate
from diracx.core.derivation import Derivation, PipelineSubmission, plan_order
from diracx.core.exceptions import DiracxError
from diracx.db.migrate import upgrade
from diracx.db.pipelines import PipelineDB
from diracx.testing.engine import (
    EngineFactory,
    EngineProcess,
    cmdline,
    identity,
    process_alive,
    wait_gone,
)

HELD = ("Matched", "Running", "Completing")


# --------------------------------------------------------------------------- claims


@pytest.fixture
def migrated(db_url: str) -> str:
    upgrade(db_url)
    return db_url


def independent_submission(n: int, salt: str) -> PipelineSubmission:
    derivations = {}
    for i in range(n):
        drv = Derivation(
            name=f"job-{i}",
            builder={"executor": "process", "argv": ["true"]},
            config={"salt": salt, "i": i},
            inputs={},
        )
        derivations[drv.dref] = drv
    return PipelineSubmission(derivations=derivations, targets=list(derivations))


async def submit_waiting(url: str, n: int) -> list[int]:
    db = PipelineDB.from_url(url)
    try:
        submission = independent_submission(n, uuid.uuid4().hex)
        outcome = await db.submit("tester", plan_order(submission), submission.targets)
    finally:
        await db.close()
    assert len(outcome.ready) == n
    return outcome.ready


async def claim_all(db: PipelineDB, job_ids: list[int], worker: str, seed: int) -> list[int]:
    """Claim *job_ids* in small batches, in an order of this worker's own."""
    order = list(job_ids)
    random.Random(seed).shuffle(order)
    won: list[int] = []
    for i in range(0, len(order), CLAIM_BATCH):
        won.extend(c.id for c in await db.claim(order[i : i + CLAIM_BATCH], worker))
    return won


CLAIM_BATCH = 3


@pytest.mark.timeout(120)
async def test_concurrent_claims_from_tasks_have_one_winner_each(migrated: str) -> None:
    job_ids = await submit_waiting(migrated, 90)
    dbs = [PipelineDB.from_url(migrated) for _ in range(4)]  # four pools, four connections
    try:
        results = await asyncio.gather(
            *(claim_all(db, job_ids, f"worker-{i}", seed=i) for i, db in enumerate(dbs))
        )
        won = [set(ids) for ids in results]
        assert sum(len(ids) for ids in results) == len(job_ids)  # no job won twice
        assert set().union(*won) == set(job_ids)  # every job won once
        assert await dbs[0].claim(job_ids, "late-worker") == []  # nothing left to win
        for i, ids in enumerate(won):
            for job_id in sorted(ids)[:3]:
                job = await dbs[0].get_job(job_id)
                assert job is not None
                assert job.status == "Matched" and job.worker == f"worker-{i}"
                assert [h.status for h in job.history] == ["Received", "Waiting", "Matched"]
        print(f"jobs won per task: {[len(w) for w in won]}")
    finally:
        for db in dbs:
            await db.close()


CLAIMER = textwrap.dedent(
    """
    import asyncio, json, os, random, sys, time
    from diracx.db.pipelines import PipelineDB

    url, worker, go, ids = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    random.Random(worker).shuffle(ids)

    async def main():
        db = PipelineDB.from_url(url)
        await db.ping()  # connected before the start signal
        print("ready", flush=True)
        while not os.path.exists(go):
            time.sleep(0.001)
        won = []
        for i in range(0, len(ids), 3):
            won.extend(c.id for c in await db.claim(ids[i : i + 3], worker))
        await db.close()
        print(json.dumps(won), flush=True)

    asyncio.run(main())
    """
)


@pytest.mark.timeout(180)
async def test_concurrent_claims_from_processes_have_one_winner_each(
    migrated: str, tmp_path: Path
) -> None:
    job_ids = await submit_waiting(migrated, 90)
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, migrated, f"proc-{i}", str(go), json.dumps(job_ids)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    try:
        for p in procs:  # every process connected, then all at once
            assert p.stdout is not None
            line = await asyncio.to_thread(p.stdout.readline)
            assert line.strip() == "ready", p.stderr and p.stderr.read()
        go.touch()
        won: list[list[int]] = []
        for p in procs:
            out, err = await asyncio.to_thread(p.communicate, timeout=120)
            assert p.returncode == 0, err
            won.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert sum(len(w) for w in won) == len(job_ids)  # no job won twice
    assert set().union(*map(set, won)) == set(job_ids)  # every job won once
    print(f"jobs won per process: {[len(w) for w in won]}")


# --------------------------------------------------------------------------- engine crashes


def db_path(engine: EngineProcess) -> Path:
    return engine.data_dir / "diracx.db"


def query(path: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(sql, args).fetchall()


def stamped(
    name: str, salt: str, *, sleep: float = 0.0, inputs: dict[str, Stage] | None = None
) -> Stage:
    """A stage whose output is different on every build (time and random bytes): a
    rebuild would add a second realization instead of finding the same one."""
    script = (
        (f"sleep {sleep}; " if sleep else "")
        + "date +%s%N > $OUT/stamp; od -An -tx1 -N16 /dev/urandom >> $OUT/stamp; "
        + 'for d in $INPUTS/*; do [ -e "$d/stamp" ] && cat "$d/stamp" >> $OUT/inputs; done; '
        + "true"
    )
    return command(name, ["sh", "-c", script], config={"salt": salt}, inputs=inputs or {})


def crash_pipeline(salt: str) -> dict[str, Stage]:
    """Two quick stages, a chain of six slow ones, and a stage that joins them all."""
    quick = [stamped(f"quick-{i}", salt) for i in range(2)]
    chain: list[Stage] = []
    for i in range(6):
        inputs = {"prev": chain[-1]} if chain else {}
        chain.append(stamped(f"chain-{i}", salt, sleep=0.3, inputs=inputs))
    join = stamped("join", salt, inputs={"last": chain[-1], "q0": quick[0], "q1": quick[1]})
    return {s.name: s for s in [*quick, *chain, join]}


class KillWhen(Progress):
    """Kills the engine (SIGKILL) once the stages *done* are Done and *running* runs."""

    def __init__(self, engine: EngineProcess, done: set[str], running: str) -> None:
        self.engine = engine
        self.waiting_for = set(done)
        self.running = running
        self.killed = False

    def event(self, event: Any) -> None:
        if event.status == "Done":
            self.waiting_for.discard(event.name)
        if (
            not self.waiting_for
            and event.name == self.running
            and event.status == "Running"
            and not self.killed
        ):
            self.killed = True
            os.kill(self.engine.pid, signal.SIGKILL)


def realization_rows(path: Path) -> dict[str, list[tuple[str, str]]]:
    rows: dict[str, list[tuple[str, str]]] = {}
    for dref, rref, created in query(path, "select dref, rref, created from realizations"):
        rows.setdefault(dref, []).append((rref, created))
    return rows


@pytest.mark.timeout(240)
def test_kill_9_in_the_middle_then_run_again(engine_factory: EngineFactory) -> None:
    """Must show 3."""
    engine = engine_factory.start()
    stages = crash_pipeline(uuid.uuid4().hex)
    drefs = {name: dref for name, dref in zip(stages, instantiate(stages).targets, strict=True)}
    killer = KillWhen(engine, {"quick-0", "quick-1", "chain-0", "chain-1"}, running="chain-2")

    with connect() as s, pytest.raises(DiracxError):
        s.run(stages, killer)
    assert killer.killed
    engine.kill()  # reap it, and check that its worker died with it (PDEATHSIG)
    assert not engine.worker_pids()

    path = db_path(engine)
    status = dict(query(path, "select name, status from jobs"))
    done_before = {n for n, st in status.items() if st == "Done"}
    held_before = {n for n, st in status.items() if st in HELD}
    assert {"quick-0", "quick-1", "chain-0", "chain-1"} <= done_before
    assert "join" not in done_before and "chain-5" not in done_before
    assert held_before, f"no job was running when the engine was killed: {status}"
    realizations_before = realization_rows(path)
    assert set(realizations_before) == {drefs[n] for n in done_before}
    jobs_before = query(path, "select count(*) from jobs")[0][0]
    print(f"killed with done={sorted(done_before)}, held={sorted(held_before)}")

    # Run it again: connect() finds the engine dead and starts a new one.
    started = time.perf_counter()
    with connect() as s:
        _, result = s.run(stages)
    print(f"second run (engine start included): {time.perf_counter() - started:.2f} s")
    assert result.ok, result.failures
    doc = json.loads((engine.data_dir / "engine.json").read_text())
    assert doc["pid"] != engine.pid and process_alive(doc["pid"])

    by_name = {st.name: st for st in result.stages}
    assert {n for n, st in by_name.items() if st.cached} == done_before  # not rebuilt
    # The unfinished stages joined the jobs of the first run: no new job.
    assert query(path, "select count(*) from jobs")[0][0] == jobs_before
    assert {st.job_id for st in result.stages if not st.cached} <= set(
        r[0] for r in query(path, "select id from jobs where pipeline_id = 1")
    )

    realizations_after = realization_rows(path)
    assert set(realizations_after) == set(drefs.values())
    duplicates = {d: rows for d, rows in realizations_after.items() if len(rows) != 1}
    assert duplicates == {}, "more than one realization of a derivation"
    for dref, rows in realizations_before.items():
        assert realizations_after[dref] == rows  # the rows from before the kill, untouched
    for name, st in by_name.items():
        assert st.rref == realizations_after[drefs[name]][0][0]

    # The interrupted jobs were rescheduled by the restarted engine, then built.
    for name in held_before:
        (job_id,) = query(path, "select id from jobs where name = ?", name)[0]
        job = s_job(job_id)
        statuses = [h["status"] for h in job["history"]]
        assert "Rescheduled" in statuses, (name, statuses)
        assert statuses[-1] == "Done"
        assert statuses.index("Rescheduled") < len(statuses) - 1
        assert job["attempt"] == 2
    for name in done_before:
        (job_id,) = query(path, "select id from jobs where name = ?", name)[0]
        assert "Rescheduled" not in [h["status"] for h in s_job(job_id)["history"]]

    # And now everything is cached.
    with connect() as s:
        _, third = s.run(stages)
    assert third.built() == [] and len(third.cached()) == len(stages)


def s_job(job_id: int) -> dict[str, Any]:
    with connect() as s:
        return s.job(job_id).model_dump(mode="json")


@pytest.mark.timeout(240)
def test_waiting_jobs_are_queued_again_when_the_engine_starts(
    engine_factory: EngineFactory,
) -> None:
    engine = engine_factory.start()
    salt = uuid.uuid4().hex
    stages = {
        "first": stamped("first", salt),
        "second": stamped("second", salt),
    }
    stages["after"] = stamped("after", salt, inputs={"a": stages["first"], "b": stages["second"]})

    # Freeze the worker: the jobs are queued, but nobody takes them.
    (worker,) = engine.worker_pids()
    os.kill(worker, signal.SIGSTOP)

    class KillOnSubmit(Progress):
        def submitted(self, pipeline: Any) -> None:
            self.pipeline_id = pipeline.id
            os.kill(engine.pid, signal.SIGKILL)

    progress = KillOnSubmit()
    with connect() as s, pytest.raises(DiracxError):
        s.run(stages, progress)
    engine.kill()  # the frozen worker died with the engine too
    assert not process_alive(worker)

    path = db_path(engine)
    status = dict(query(path, "select name, status from jobs"))
    assert status == {"first": "Waiting", "second": "Waiting", "after": "Checking"}
    assert query(path, "select count(*) from realizations") == [(0,)]

    # A new engine: nobody submits anything, yet the Waiting jobs get built.
    engine_factory.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = dict(query(path, "select name, status from jobs"))
        if set(status.values()) <= {"Done", "Failed"}:
            break
        time.sleep(0.1)
    assert status == {"first": "Done", "second": "Done", "after": "Done"}

    with connect() as s:
        for name in ("first", "second"):
            (job_id,) = query(path, "select id from jobs where name = ?", name)[0]
            job = s.job(job_id)
            assert [h.status for h in job.history] == [
                "Received",
                "Waiting",
                "Matched",
                "Running",
                "Done",
            ]
            assert job.attempt == 1  # never held by the dead worker: nothing to reschedule
        _, again = s.run(stages)
        assert again.built() == [] and len(again.cached()) == 3
        assert progress.pipeline_id == 1
    assert query(path, "select count(*) from jobs") == [(3,)]
    assert query(path, "select count(distinct dref), count(*) from realizations") == [(3, 3)]


@pytest.mark.timeout(120)
def test_builds_do_not_outlive_a_killed_engine(engine_factory: EngineFactory) -> None:
    engine = engine_factory.start()
    slow = command(
        "slow", ["sh", "-c", "sleep 30; echo late > $OUT/x"], config={"salt": uuid.uuid4().hex}
    )

    class KillWhenRunning(Progress):
        def event(self, event: Any) -> None:
            if event.status == "Running":
                deadline = time.monotonic() + 10
                while not self.builds() and time.monotonic() < deadline:
                    time.sleep(0.02)
                self.seen = self.builds()
                os.kill(engine.pid, signal.SIGKILL)

        def builds(self) -> list[tuple[int, int]]:
            found = (identity(p) for p in engine.processes() if "sleep" in " ".join(cmdline(p)))
            return [i for i in found if i is not None]

    progress = KillWhenRunning()
    with connect() as s, pytest.raises(DiracxError):
        s.run(slow, progress)
    engine.kill()
    assert progress.seen, "the build never started"
    # Builds run in sessions of their own, so they outlive a worker killed with -9; the
    # next worker on this machine kills them (found by their TMPDIR) before it builds.
    assert [p for p, started in progress.seen if process_alive(p, started)], "the build died early"
    engine_factory.start()
    assert wait_gone(progress.seen, timeout=10) == []
