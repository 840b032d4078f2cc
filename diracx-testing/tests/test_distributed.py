"""The distributed service fixture starts real processes and leaves none behind.

An inner pytest run uses ``distributed_service``: one test kills a worker in the
middle of a build (the build, in a session of its own, goes on running) and kills
and restarts the API server; one fails on purpose; one starts a service whose
worker cannot start. Each records the pids it saw; once the inner run is over,
none of them may still run, whatever way its test ended.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from diracx.testing.engine import process_alive

pytestmark = pytest.mark.timeout(300)

INNER_TESTS = """
import json, os, signal, subprocess, sys, time, urllib.request
from pathlib import Path

import pytest

from diracx.testing.distributed import (
    DistributedStartError, build_processes, start_distributed,
)


def record(**kw):
    with open(os.environ["RECORD"], "a") as f:
        f.write(json.dumps(kw) + "\\n")


def ready(url):
    with urllib.request.urlopen(url + "/api/health/ready", timeout=5) as r:
        return r.status == 200


def wait_for(predicate, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("timed out")


def processes_with(text):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                if text.encode() in Path(f"/proc/{entry}/environ").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


def test_kill_and_restart(distributed_service, tmp_path):
    svc = distributed_service
    assert os.environ["DIRACX_URL"] == svc.url and os.environ["DIRACX_TOKEN"] == svc.token
    assert ready(svc.url)
    assert len(svc.worker_pids()) == 3 and svc.scheduler is not None
    settings = svc.service_env
    assert settings["DIRACX_DB_URL"].startswith("postgresql+asyncpg://")
    assert settings["DIRACX_BROKER_URL"].startswith("redis://127.0.0.1:")
    assert settings.get("DIRACX_STORE_URL", "").startswith("s3://") or svc.store_path
    assert len({w.env["DIRACX_DATA_DIR"] for w in svc.workers}) == 3  # scratch of their own
    pids = svc.processes()

    # `dirac run` a long build, detach (^C), and kill -9 the worker that builds it
    pipeline = tmp_path / "sleepy.py"
    pipeline.write_text(
        "from diracx.api import command\\n"
        "targets = [command('sleepy', ['sleep', '120'], config={'salt': %r})]\\n" % str(tmp_path)
    )
    cli = subprocess.Popen([sys.executable, "-m", "diracx.cli", "run", str(pipeline)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    index = wait_for(lambda: [i for i, w in enumerate(svc.workers) if build_processes(w.cwd)])[0]
    builds = build_processes(svc.workers[index].cwd)
    cli.send_signal(signal.SIGINT)
    assert cli.wait(30) == 130
    svc.kill_worker(index)
    assert not svc.workers[index].alive() and len(svc.worker_pids()) == 2
    assert all(os.path.exists(f"/proc/{b}") for b in builds)  # the build outlived its worker

    svc.kill_api()
    assert not svc.api.alive()
    svc.restart_api()
    assert ready(svc.url)
    svc.restart_worker((index + 1) % 3)  # a worker restarted elsewhere: reaps nothing here
    assert len(svc.worker_pids()) == 2
    record(test="kill", pids=sorted(set(pids + builds + svc.processes())), builds=builds)


def test_fails_on_purpose(distributed_service):
    record(test="fail", pids=distributed_service.processes())
    assert False, "on purpose"


def test_a_worker_that_cannot_start(tmp_path, postgresql_server, redis_server):
    with pytest.raises(DistributedStartError, match="worker-0 exited with code 2"):
        start_distributed(
            tmp_path / "svc",
            workers=[["--no-such-option"]],
            postgresql=postgresql_server,
            redis=redis_server,
            s3=False,
        )
    assert processes_with(str(tmp_path / "svc")) == []
    record(test="bad-start")
"""


@pytest.mark.postgresql
def test_no_process_is_left_behind(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TESTS))
    record = tmp_path / "record.jsonl"
    env = {**os.environ, "RECORD": str(record)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "-o", "asyncio_default_fixture_loop_scope=function", "-q",
         str(tmp_path / "test_inner.py")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=280,
    )  # fmt: skip
    assert "1 failed, 2 passed" in proc.stdout, proc.stdout + proc.stderr
    assert "AssertionError: on purpose" in proc.stdout
    records = {r["test"]: r for r in map(json.loads, record.read_text().splitlines())}
    assert set(records) == {"kill", "fail", "bad-start"}
    pids = records["kill"]["pids"] + records["fail"]["pids"]
    assert len(records["kill"]["pids"]) >= 7 and records["kill"]["builds"]  # api x2, workers...
    assert [p for p in pids if process_alive(p)] == []
