"""Crashes of a distributed DiracX: real processes killed with SIGKILL mid-flight.

The service is ``distributed_service`` (PostgreSQL, Redis, moto's S3 server, an API
server, three workers and the scheduler, each a real process on loopback):

- Must show 2: a worker killed with ``kill -9`` in the middle of a job. The
  scheduler notices the lost worker (no heartbeat), reschedules the job, another
  worker builds it: exactly one realization of the derivation, and every blob in
  the store hashes to its name (nothing partial);
- Must show 3: the API server killed with ``kill -9`` while a big pipeline is
  being submitted, at a random point. The pipeline is recorded whole or not at
  all, the client gets a ``ServiceUnavailableError`` (a message, not an httpx
  traceback), and the same submission after a restart succeeds.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Any

import pytest

from diracx.api import Progress, Stage, command, connect, instantiate
from diracx.core.exceptions import DiracxError, ServiceUnavailableError
from diracx.testing.distributed import DistributedService, build_processes

pytestmark = pytest.mark.timeout(240)
SLEEP = 4  # seconds the slow stage sleeps: the worker is killed meanwhile


def job_row(service: DistributedService, name: str) -> dict[str, str]:
    columns = ("id", "status", "worker", "attempt", "dref")
    rows = service.query(f"select {', '.join(columns)} from jobs where name = '{name}'")
    assert len(rows) == 1, rows
    return dict(zip(columns, rows[0], strict=True))


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


# --------------------------------------------------------------------------- Must show 2


def test_kill_9_of_a_worker_mid_job(distributed_service: DistributedService) -> None:
    service = distributed_service
    salt = uuid.uuid4().hex
    # 3 MB of output (S3 moves it whole or not at all), then a sleep: killed in there.
    slow = command(
        "slow",
        [
            "sh",
            "-c",
            "head -c 3000000 /dev/urandom > $OUT/data.bin; "
            f"sha256sum < $OUT/data.bin > $OUT/data.sha256; sleep {SLEEP}",
        ],
        config={"salt": salt},
    )
    check = command(
        "check",
        ["sh", "-c", '[ "$(sha256sum < $IN_SLOW/data.bin)" = "$(cat $IN_SLOW/data.sha256)" ] '
         "&& echo whole > $OUT/ok"],
        inputs={"slow": slow},
        config={"salt": salt},
    )  # fmt: skip
    (slow_dref,) = instantiate(slow).targets

    class KillTheBuilder(Progress):
        """When the slow stage runs, kill -9 the worker that builds it, mid-sleep."""

        def __init__(self) -> None:
            self.killed: dict[str, Any] = {}

        def event(self, event: Any) -> None:
            if event.status != "Running" or event.name != "slow" or self.killed:
                return
            job = job_row(service, "slow")
            pid = int(job["worker"].rsplit("-", 2)[1])  # worker ids are host-pid-random
            index = service.worker_index(pid)
            builds = wait_for(
                lambda: build_processes(service.workers[index].cwd), 10, "the build to start"
            )
            time.sleep(0.5)  # well inside the sleep
            service.kill_worker(index)
            self.killed.update(worker=job["worker"], index=index, pid=pid, builds=builds)

    progress = KillTheBuilder()
    started = time.monotonic()
    with connect() as s:
        _, result = s.run([check], progress)
    elapsed = time.monotonic() - started
    assert progress.killed, "the worker was never killed"
    assert result.ok, (result.failures, service.logs())
    print(f"killed worker {progress.killed['pid']}; pipeline done after {elapsed:.1f} s")

    # The job completed on another worker, on a second attempt, through Stalled/Rescheduled.
    job = job_row(service, "slow")
    assert job["status"] == "Done"
    assert job["worker"] != progress.killed["worker"]
    assert int(job["attempt"]) == 2
    with connect() as s:
        history = [h.status.value for h in s.job(int(job["id"])).history]
    assert history == [
        "Received", "Waiting", "Matched", "Running",  # on the worker that was killed
        "Stalled", "Rescheduled",  # the scheduler's tick: no heartbeat, the worker is lost
        "Waiting", "Matched", "Running", "Done",  # on another worker
    ], history  # fmt: skip

    # Exactly one realization of each derivation: the killed build recorded nothing.
    assert service.query(f"select count(*) from realizations where dref = '{slow_dref}'") == [
        ("1",)
    ]
    assert service.query("select count(*), count(distinct dref) from realizations") == [("2", "2")]
    assert service.query("select count(*) from jobs") == [("2",)]
    # No partial blob: every blob hashes to its name, the output is whole.
    assert service.bad_blobs() == []
    with connect() as s:
        (slow_result,) = [st for st in result.stages if st.name == "slow"]
        out = s.realization(slow_result.rref or "")
        assert len(out.read_bytes("data.bin")) == 3_000_000
        (check_result,) = [st for st in result.stages if st.name == "check"]
        assert s.realization(check_result.rref or "").read_text("ok") == "whole\n"


# --------------------------------------------------------------------------- Must show 3

WIDE = 400  # stages of the big pipeline


def big_pipeline(salt: str) -> list[Stage]:
    """Many stages and a few chains: a submission that takes the service a while."""
    stages: list[Stage] = []
    for i in range(WIDE // 4):
        prev = command(f"head-{i}", ["true"], config={"salt": salt})
        stages.append(prev)
        for j in range(3):
            prev = command(f"link-{i}-{j}", ["true"], inputs={"prev": prev}, config={"salt": salt})
            stages.append(prev)
    return stages


def pipeline_rows(service: DistributedService) -> list[tuple[int, int, int]]:
    """(pipeline id, its stage rows, its own jobs) for every recorded pipeline."""
    rows = service.query(
        "select p.id, "
        "(select count(*) from pipeline_stages s where s.pipeline_id = p.id), "
        "(select count(*) from jobs j where j.pipeline_id = p.id) "
        "from pipelines p order by p.id"
    )
    return [(int(a), int(b), int(c)) for a, b, c in rows]


class Timeline(Progress):
    """Marks when the client has instantiated: the requests start then."""

    def __init__(self) -> None:
        self.instantiated_at = threading.Event()
        self.t0 = 0.0

    def instantiated(self, inst: Any) -> None:
        self.t0 = time.monotonic()
        self.instantiated_at.set()


def submit_in_thread(stages: list[Stage], progress: Progress) -> tuple[threading.Thread, dict]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            with connect() as s:
                outcome["result"] = s.run(stages, progress)[1]
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="submitter")
    thread.start()
    return thread, outcome


def time_to_record(service: DistributedService, stages: list[Stage]) -> float:
    """Seconds from the client's first request to the pipeline's commit, on a warm server."""
    timeline = Timeline()
    before = service.scalar("select count(*) from pipelines")
    thread, outcome = submit_in_thread(stages, timeline)
    assert timeline.instantiated_at.wait(60)
    recorded = wait_for(
        lambda: service.scalar("select count(*) from pipelines") > before and time.monotonic(),
        60,
        "the pipeline to be recorded",
    )
    thread.join(120)
    assert "result" in outcome and outcome["result"].ok, outcome
    return float(recorded) - timeline.t0


def test_kill_9_of_the_api_server_during_a_submission(
    distributed_service: DistributedService,
) -> None:
    service = distributed_service
    n = len(big_pipeline("x"))
    with connect() as s:  # a warm server: the first request imports what it needs
        assert s.run(command("warm-up", ["true"], config={"salt": uuid.uuid4().hex}))[1].ok
    window = time_to_record(service, big_pipeline(uuid.uuid4().hex))
    print(f"{n} stages are recorded {window * 1000:.0f} ms after the client starts sending")
    rng = random.Random()
    baseline = pipeline_rows(service)

    seen: list[str] = []
    for attempt in range(4):
        stages = big_pipeline(uuid.uuid4().hex)
        timeline = Timeline()
        thread, outcome = submit_in_thread(stages, timeline)
        assert timeline.instantiated_at.wait(60)
        delay = rng.uniform(0.0, window * 1.5)  # mostly before the commit, some after
        time.sleep(delay)
        service.kill_api()
        thread.join(60)
        assert not thread.is_alive()

        # The client's error says what happened and that trying again is right.
        error = outcome.get("error")
        assert isinstance(error, ServiceUnavailableError), (delay, outcome)
        assert isinstance(error, DiracxError)
        assert service.url in str(error) and "try again" in str(error)
        assert type(error).__module__.startswith("diracx.")

        # Whole or not at all: a recorded pipeline has every stage, each with its job.
        rows = pipeline_rows(service)
        new = [r for r in rows if r not in baseline]
        assert len(new) <= 1, new
        for _, stage_rows, jobs in new:
            assert stage_rows == n and jobs == n, new
        seen.append("recorded" if new else "not recorded")
        print(f"attempt {attempt}: killed {delay * 1000:.0f} ms in: {seen[-1]}")

        # The same submission succeeds once the server is back; recorded jobs are reused.
        service.restart_api()
        with connect() as s:
            _, result = s.run(stages)
        assert result.ok, result.failures
        assert len(result.stages) == n
        baseline = pipeline_rows(service)
        assert [r[1] for r in baseline[2:]] == [n] * (len(baseline) - 2)  # after the warm-ups
        # One job per derivation, however many submissions.
        duplicates = service.query(
            "select j.dref, j.pipeline_id, j.status, j.minor_status, j.attempt from jobs j where "
            "j.dref in (select dref from jobs group by dref having count(*) > 1) order by j.dref"
        )
        assert duplicates == [], duplicates
    print(f"outcomes: {seen}")
    assert service.bad_blobs() == []
