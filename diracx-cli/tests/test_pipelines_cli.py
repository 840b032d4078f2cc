"""``dirac pipelines list | cancel | retry`` (and ``kill``) as a user runs them, on the
embedded engine (SQLite) and on the distributed service (PostgreSQL)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from diracx.testing.distributed import DistributedService
from diracx.testing.engine import EngineProcess

from .test_cli import as_json, dirac, no_traceback
from .test_jobs_api_cli import failed_pipeline
from .test_kill import Running

pytestmark = pytest.mark.timeout(240)
Service = EngineProcess | DistributedService


@pytest.fixture
def engine(module_service: Service) -> Service:
    return module_service


def wait_status(job_id: int, status: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if as_json(dirac("jobs", "history", str(job_id), "--json"))[-1]["status"] == status:
            return
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} never became {status}")


def test_list_and_retry(engine: Service, tmp_path: Path) -> None:
    jobs = failed_pipeline(tmp_path)
    pid = jobs["pipeline"]
    page: dict[str, Any] = as_json(dirac("pipelines", "list", "--json"))
    (mine,) = [p for p in page["pipelines"] if p["id"] == pid]
    assert mine["status"] == "Failed" and mine["counts"] == {"Failed": 2}
    assert mine["owner"] and mine["target_count"] == 1
    failed = as_json(dirac("pipelines", "list", "--status", "FAILED", "--json"))
    assert pid in [p["id"] for p in failed["pipelines"]]
    done = as_json(dirac("pipelines", "list", "--status", "done", "--json"))
    assert pid not in [p["id"] for p in done["pipelines"]]
    table = dirac("pipelines", "list", "--limit", "1")
    assert table.returncode == 0, table.stderr
    assert str(pid) in table.stdout and "2 Failed" in table.stdout
    bad = dirac("pipelines", "list", "--status", "sideways")
    assert bad.returncode == 1 and "unknown status 'sideways'" in bad.stderr
    no_traceback(bad)

    retried = as_json(dirac("pipelines", "retry", str(pid), "--json"))
    assert retried == {
        "retried": [
            {"id": jobs["bad"]["id"], "name": "bad", "status": "Waiting"},
            {"id": jobs["after"]["id"], "name": "after", "status": "Checking"},
        ],
        "skipped": {},
    }
    wait_status(jobs["after"]["id"], "Failed")  # bad fails again, and so after
    again = dirac("pipelines", "retry", str(pid))
    assert again.returncode == 0, again.stderr
    assert f"pipeline {pid}: 2 jobs retried" in again.stdout and "Checking" in again.stdout
    wait_status(jobs["after"]["id"], "Failed")

    nothing = dirac("pipelines", "cancel", str(pid))
    assert nothing.returncode == 1
    assert f"pipeline {pid} has no live job to kill (it is Failed)" in nothing.stderr
    unknown = dirac("pipelines", "retry", "999999")
    assert unknown.returncode == 1 and "pipeline 999999 does not exist" in unknown.stderr
    no_traceback(unknown)


def test_cancel_then_retry(engine: Service, tmp_path: Path) -> None:
    run = Running(tmp_path)
    try:
        pid = run.pipeline_id
        cancelled = as_json(dirac("pipelines", "cancel", str(pid), "--json"))
        assert cancelled == {"killed": sorted(run.jobs.values()), "failed": []}
        code, _, _ = run.finish()
        assert code != 0
        listed = as_json(dirac("pipelines", "list", "--json"))
        (mine,) = [p for p in listed["pipelines"] if p["id"] == pid]
        assert mine["status"] == "Failed" and mine["counts"] == {"Killed": 2}

        retried = dirac("pipelines", "retry", str(pid))
        assert retried.returncode == 0, retried.stderr
        assert "2 jobs retried" in retried.stdout
        killed = dirac("pipelines", "kill", str(pid))  # the former name still works
        assert killed.returncode == 0, killed.stderr
        assert f"pipeline {pid} killed: 2 jobs killed" in killed.stdout
    finally:
        run.close()


def test_python_session(engine: Service, tmp_path: Path) -> None:
    """The same from Python: ``list_pipelines`` page by page, ``job_heartbeat``."""
    from diracx.api import connect

    first = failed_pipeline(tmp_path)
    second = failed_pipeline(tmp_path)
    with connect() as s:
        page = s.list_pipelines(limit=1)
        assert [p.id for p in page.pipelines] == [second["pipeline"]]
        assert page.next_cursor == second["pipeline"]
        older = s.list_pipelines(limit=1, cursor=page.next_cursor, status="Failed")
        assert [p.id for p in older.pipelines] == [first["pipeline"]]
        bad = first["bad"]["id"]
        beat = s.job_heartbeat({bad: {"LoadAverage": 0.5}, 999999: {}})
        assert beat.success == []
        assert beat.failed == {
            bad: f"job {bad} is Failed: only a Running or Completing job has heartbeats",
            999999: "job 999999 does not exist",
        }
        assert s.job_heartbeat([bad]).failed.keys() == {bad}
