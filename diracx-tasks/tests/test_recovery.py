"""Retries, kills and the periodic tasks with real worker processes.

Two deployments, both started by the tests:

- the embedded engine (SQLite, its own worker, periodic tasks run by the engine);
- a distributed DiracX (PostgreSQL, Redis, two ``dirac worker`` processes and
  ``dirac scheduler``, i.e. Celery beat sending the periodic task to a worker),
  shared by the tests of this module, with short periodic settings.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from diracx.api import Progress, Stage, aconnect, command, connect
from diracx.api.session import PipelineResult
from diracx.api.sync import Session
from diracx.core.derivation import Derivation, PipelineSubmission, plan_order
from diracx.core.models import JobInfo, PipelineInfo
from diracx.db.pipelines import PipelineDB
from diracx.testing.distributed import DistributedService, start_distributed
from diracx.testing.engine import EngineFactory, cmdline, identity, wait_gone
from diracx.testing.postgresql import PostgreSQLServer

pytestmark = pytest.mark.timeout(300)

# Short periodic settings, so that recovery shows within seconds.
FAST = {
    "DIRACX_PERIODIC_INTERVAL": "0.5",
    "DIRACX_HEARTBEAT_INTERVAL": "0.5",
    "DIRACX_HEARTBEAT_TIMEOUT": "5",
    "DIRACX_REQUEUE_AFTER": "2",
    "DIRACX_RESCHEDULE_BACKOFF": "0.5",
    "DIRACX_SCRATCH_CLEANUP_INTERVAL": "1",
}


@pytest.fixture(scope="module")
def service(postgresql_server: PostgreSQLServer) -> Iterator[DistributedService]:
    """PostgreSQL, Redis, two workers and the scheduler; blobs in a shared directory."""
    with start_distributed(
        workers=2, postgresql=postgresql_server, extra_env=FAST, s3=False, scheduler=True
    ) as svc:
        yield svc


def distributed_session(service: DistributedService) -> Session:
    return connect(url=service.url, token=service.token)


def flaky(tmp_path: Path, fails: int, *, retries: int, backoff: float) -> Stage:
    """Fails its first *fails* attempts (a counter in a host file), then succeeds."""
    counter = tmp_path / f"attempts-{uuid.uuid4().hex}"
    script = (
        f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n + 1)); echo $n > {counter}; "
        f'if [ $n -le {fails} ]; then echo "attempt $n fails" >&2; exit 3; fi; '
        'echo "attempt $n" > $OUT/result'
    )
    return command("flaky", ["sh", "-c", script], retries=retries, backoff=backoff)


def history(job: JobInfo) -> list[tuple[str, str]]:
    """(status, minor status) of each status change: a Waiting job's minor status may
    change on the way ("No worker serves queue..." while a worker starts): those rows
    are left out."""
    steps: list[tuple[str, str]] = []
    for h in job.history:
        if not (steps and steps[-1][0] == h.status == "Waiting"):
            steps.append((str(h.status), h.minor_status))
    return steps


def wait_for(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def pids_running(argv: list[str]) -> list[tuple[int, int]]:
    """(pid, start time) of the processes whose command line is exactly *argv*."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and cmdline(int(entry)) == argv:
            ident = identity(int(entry))
            if ident is not None:
                found.append(ident)
    return found


class Background(Progress):
    """``session.run(stages)`` in a thread: the test watches and kills meanwhile."""

    def __init__(self, session: Session, stages: Any) -> None:
        self.result: PipelineResult | None = None
        self.error: BaseException | None = None
        self.pipeline_id: int | None = None
        self.thread = threading.Thread(target=self._run, args=(session, stages), daemon=True)
        self.thread.start()

    def submitted(self, pipeline: PipelineInfo) -> None:
        self.pipeline_id = pipeline.id

    def _run(self, session: Session, stages: Any) -> None:
        try:
            _, self.result = session.run(stages, self)
        except BaseException as exc:
            self.error = exc

    def join(self, timeout: float = 60) -> PipelineResult:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the pipeline did not end"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result


def running_job(session: Session, run: Background, name: str) -> JobInfo:
    """Wait until the stage *name* of the pipeline being run is Running; its job."""

    def find() -> JobInfo | None:
        if run.error is not None:
            raise run.error
        if run.pipeline_id is None:
            return None
        for stage in session.pipeline(run.pipeline_id).stages:
            if stage.name == name and stage.status == "Running" and stage.job_id is not None:
                return session.job(stage.job_id)
        return None

    found: JobInfo = wait_for(find, 60, f"stage {name} to run")
    return found


def read_blob(digest: str, url: str | None = None, token: str | None = None) -> bytes:
    async def fetch() -> bytes:
        async with await aconnect(url, token) as a:
            return await a.fetch_blob(digest)

    return asyncio.run(fetch())


# --------------------------------------------------------------------------- retries


def check_retried_once(
    result: PipelineResult,
    session: Session,
    backoff: float,
    url: str | None = None,
    token: str | None = None,
) -> None:
    assert result.ok, result.failures
    [stage] = result.stages
    assert stage.job_id is not None
    job = session.job(stage.job_id)
    assert job.status == "Done" and job.attempt == 2
    steps = history(job)
    statuses = [s for s, _ in steps]
    assert statuses == [
        "Received",
        "Waiting",
        "Matched",
        "Running",
        "Rescheduled",
        "Waiting",
        "Matched",
        "Running",
        "Done",
    ], steps
    rescheduled = steps[4][1]
    assert rescheduled.startswith("Attempt 1 failed: exit code 3 (log "), rescheduled
    assert steps[5][1] == f"Retry 1 of 2 in {backoff:.1f} s: exit code 3"
    # the backoff was respected: the retry started no earlier than it allowed
    times = {(str(h.status), h.minor_status): h.timestamp for h in job.history}
    retry_at = times[("Waiting", steps[5][1])]
    started_again = max(h.timestamp for h in job.history if h.status == "Matched")
    waited = (started_again - retry_at).total_seconds()
    assert waited >= backoff, waited
    # the failed attempt's log is kept, named in the history; the job's is the last one's
    failed_log = rescheduled.rsplit("(log ", 1)[1].rstrip(")")
    assert b"attempt 1 fails" in read_blob(failed_log, url, token)
    assert "fails" not in session.job_log(stage.job_id)


def test_retry_then_success_on_the_embedded_engine(
    engine_factory: EngineFactory, tmp_path: Path
) -> None:
    engine_factory.start(env=FAST)
    with connect() as s:
        _, result = s.run(flaky(tmp_path, fails=1, retries=2, backoff=1.0))
        check_retried_once(result, s, backoff=1.0)


def test_retry_then_success_distributed(service: DistributedService, tmp_path: Path) -> None:
    with distributed_session(service) as s:
        _, result = s.run(flaky(tmp_path, fails=1, retries=2, backoff=1.5))
        check_retried_once(result, s, 1.5, service.url, service.token)


def test_retries_exhausted(service: DistributedService, tmp_path: Path) -> None:
    with distributed_session(service) as s:
        _, result = s.run(flaky(tmp_path, fails=5, retries=1, backoff=0.0))
        assert not result.ok
        [stage] = result.stages
        assert stage.job_id is not None
        job = s.job(stage.job_id)
        assert (job.status, job.minor_status, job.attempt) == ("Failed", "exit code 3", 2)
        assert "attempt 2 fails" in s.job_log(stage.job_id)
        assert "exit code 3" in result.failures["flaky"]


# --------------------------------------------------------------------------- kill


def check_kill_stops_the_build(
    session: Session, data_dirs: list[Path], *, kill: Callable[[JobInfo], Any]
) -> None:
    marker = f"{60 + int(uuid.uuid4().int % 1000) / 1000:.3f}"  # sleep 60.xyz: ours alone
    slow = command("slow", ["sleep", marker])
    after = command("after", ["sh", "-c", "cp -r $IN_SLOW $OUT/"], inputs={"slow": slow})
    run = Background(session, after)
    job = running_job(session, run, "slow")
    build = wait_for(lambda: pids_running(["sleep", marker]), 30, "the build process")
    scratch = wait_for(
        lambda: [p for d in data_dirs for p in d.glob(f"scratch/*/{job.id}-{job.attempt}")],
        30,
        "the scratch directory",
    )
    killed_at = time.monotonic()
    kill(job)
    assert wait_gone(build, timeout=10) == [], "the build survived the kill"
    stopped_in = time.monotonic() - killed_at
    result = run.join()
    assert not result.ok
    statuses = {s.name: (s.status, s.minor_status) for s in result.stages}
    assert statuses["slow"][0] == "Killed"
    assert statuses["after"][0] in ("Failed", "Killed")
    wait_for(lambda: not any(p.exists() for p in scratch), 10, "the scratch to be removed")
    time.sleep(1.0)  # the worker's report of the stopped build must not overwrite Killed
    final = session.job(job.id)
    assert final.status == "Killed", history(final)
    assert [s for s, _ in history(final)][-2:] == ["Running", "Killed"]
    print(f"the build stopped {stopped_in:.2f} s after the kill")
    assert stopped_in < 5


def test_kill_a_running_job_on_the_embedded_engine(engine_factory: EngineFactory) -> None:
    engine = engine_factory.start()
    with connect() as s:
        check_kill_stops_the_build(s, [engine.data_dir], kill=lambda job: s.kill_job(job.id))


def test_kill_a_running_pipeline_distributed(service: DistributedService) -> None:
    data_dirs = [w.cwd for w in service.workers]
    with distributed_session(service) as s:
        check_kill_stops_the_build(s, data_dirs, kill=lambda job: s.kill_pipeline(job.pipeline_id))


# --------------------------------------------------------------------------- periodic tasks


def test_the_scheduler_sends_lost_messages_again(service: DistributedService) -> None:
    """A Waiting job whose message never went out is built: beat -> periodic task -> worker."""
    drv = Derivation(
        name="lost-message",
        builder={"executor": "process", "argv": ["true"]},
        config={"salt": uuid.uuid4().hex},
    )
    submission = PipelineSubmission(derivations={drv.dref: drv}, targets=[drv.dref])

    async def submit_without_sending() -> int:
        db = PipelineDB.from_url(service.db_url)
        try:
            outcome = await db.submit("tester", plan_order(submission), submission.targets)
        finally:
            await db.close()
        return outcome.ready[0]

    job_id = asyncio.run(submit_without_sending())
    with distributed_session(service) as s:
        job = wait_for(lambda: (j := s.job(job_id)).status == "Done" and j, 30, "the job")
    statuses = [s for s, _ in history(job)]
    assert statuses == ["Received", "Waiting", "Matched", "Running", "Done"]


def test_a_lost_worker_is_replaced_without_using_retries(service: DistributedService) -> None:
    """kill -9 of the worker building a job: after the heartbeat timeout a tick
    reschedules the job, and the other worker builds it; retries are not touched."""
    salt = uuid.uuid4().hex
    stage = command(
        "survivor", ["sh", "-c", f"sleep 2; echo {salt} > $OUT/salt"], config={"salt": salt}
    )
    try:
        with distributed_session(service) as s:
            run = Background(s, stage)
            job = running_job(s, run, "survivor")
            assert job.worker is not None
            pid = int(job.worker.rsplit("-", 2)[1])
            index = service.worker_index(pid)
            service.kill_worker(index)
            result = run.join(timeout=90)
            assert result.ok, result.failures
            final = s.job(job.id)
        steps = history(final)
        statuses = [st for st, _ in steps]
        assert statuses[statuses.index("Running") + 1 : statuses.index("Running") + 4] == [
            "Stalled",
            "Rescheduled",
            "Waiting",
        ], steps
        assert statuses[-1] == "Done" and final.attempt == 2
        assert final.worker is not None and final.worker != job.worker
        rows = service.query(f"select failures, reschedules from jobs where id = {job.id}")
        assert rows == [("0", "1")]
        assert service.scalar(f"select count(*) from realizations where job_id = {job.id}") == 1
    finally:
        service.restart_worker(index)


def test_workers_clean_up_after_dead_workers_of_their_machine(
    service: DistributedService,
) -> None:
    """A dead worker's scratch directory (and a build still running in it) goes away."""
    scratch_root = service.workers[0].cwd / "scratch"
    dead = scratch_root / f"{socket.gethostname()}-999999999-abcdef"  # no such process
    (dead / "7-1" / "tmp").mkdir(parents=True)
    (dead / "7-1" / "out").mkdir()
    (dead / "7-1" / "out" / "partial").write_text("half written")
    marker = f"{60 + uuid.uuid4().int % 1000 / 1000:.3f}"
    build = subprocess.Popen(
        ["sleep", marker],
        env={"PATH": os.environ["PATH"], "TMPDIR": str(dead / "7-1" / "tmp")},
        start_new_session=True,
    )
    other_host = scratch_root / "elsewhere-999999999-abcdef"  # another machine's: kept
    other_host.mkdir()
    try:
        wait_for(lambda: not dead.exists(), 30, "the dead worker's scratch to be removed")
        build.wait(timeout=10)
        assert build.returncode == -9
        assert other_host.exists()
    finally:
        if build.poll() is None:
            build.kill()
            build.wait()
        other_host.rmdir()
