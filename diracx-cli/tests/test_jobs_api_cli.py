"""``dirac jobs search | summary | history | reschedule | delete`` as a user runs them,
on the embedded engine (SQLite) and on the distributed service (PostgreSQL)."""

from __future__ import annotations

import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from diracx.testing.distributed import DistributedService
from diracx.testing.engine import EngineProcess

from .test_cli import FAILING, as_json, dirac, no_traceback

pytestmark = pytest.mark.timeout(240)
Service = EngineProcess | DistributedService


@pytest.fixture
def engine(module_service: Service) -> Service:
    return module_service


def failed_pipeline(tmp_path: Path) -> dict[str, Any]:
    """Run a pipeline whose stage ``bad`` fails (and so ``after``); its jobs by name."""
    path = tmp_path / "broken_pipeline.py"
    path.write_text(textwrap.dedent(FAILING.format(salt=uuid.uuid4().hex)))
    proc = dirac("run", str(path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    pipeline_id = int(proc.stdout.split()[1].rstrip(":"))
    found = as_json(
        dirac("jobs", "search", "--filter", f"pipeline_id={pipeline_id}", "--sort", "id", "--json")
    )
    return {"pipeline": pipeline_id, **{j["name"]: j for j in found["jobs"]}}


def test_search_summary_history(engine: Service, tmp_path: Path) -> None:
    jobs = failed_pipeline(tmp_path)
    pid = str(jobs["pipeline"])
    failed = as_json(
        dirac("jobs", "search", "-f", f"pipeline_id={pid}", "-f", "Status=Failed", "--json")
    )
    assert failed["total"] == 2
    assert [j["name"] for j in failed["jobs"]] == ["after", "bad"]  # newest first
    like = as_json(
        dirac("jobs", "search", "-f", f"pipeline_id={pid}", "-f", "Name like ba%", "--json")
    )
    assert [j["name"] for j in like["jobs"]] == ["bad"]
    not_in = as_json(
        dirac("jobs", "search", "-f", f"pipeline_id={pid}", "-f", "name not in bad", "--json")
    )
    assert [j["name"] for j in not_in["jobs"]] == ["after"]

    table = dirac("jobs", "search", "-f", f"pipeline_id={pid}", "--per-page", "1")
    assert table.returncode == 0, table.stderr
    assert "after" in table.stdout and "jobs 1-1 of 2; --page 2 for more" in table.stdout
    past = dirac("jobs", "search", "-f", f"pipeline_id={pid}", "--page", "5")
    assert past.returncode == 1 and "past the 2 matching job(s)" in past.stderr
    no_traceback(past)

    summary = as_json(
        dirac("jobs", "summary", "--group", "status", "-f", f"pipeline_id={pid}", "--json")
    )
    assert summary == [{"status": "Failed", "count": 2}]
    grouped = dirac("jobs", "summary", "-g", "status", "-g", "name", "-f", f"pipeline_id={pid}")
    assert grouped.returncode == 0 and "2 jobs" in grouped.stdout

    history = dirac("jobs", "history", str(jobs["bad"]["id"]))
    assert history.returncode == 0, history.stderr
    assert "Failed" in history.stdout and "Received" in history.stdout
    entries = as_json(dirac("jobs", "history", str(jobs["bad"]["id"]), "--json"))
    assert entries[0]["status"] == "Received" and entries[-1]["status"] == "Failed"


def test_reschedule_and_delete(engine: Service, tmp_path: Path) -> None:
    jobs = failed_pipeline(tmp_path)
    bad, after = str(jobs["bad"]["id"]), str(jobs["after"]["id"])
    refused = dirac("jobs", "reschedule", after)
    assert refused.returncode == 1
    assert "which is Failed: reschedule that one first" in " ".join(refused.stderr.split())
    no_traceback(refused)

    again = as_json(dirac("jobs", "reschedule", bad, "--json"))
    assert again == [{"id": int(bad), "status": "Waiting", "minor_status": "Rescheduled by local"}]
    # a worker builds it again, and it fails again (exit 4)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        entries = as_json(dirac("jobs", "history", bad, "--json"))
        if entries[-1]["status"] == "Failed":
            break
        time.sleep(0.2)
    statuses = [e["status"] for e in entries]
    assert statuses[-1] == "Failed" and "Rescheduled" in statuses

    deleted = dirac("jobs", "delete", bad, after)
    assert deleted.returncode == 0, deleted.stderr
    assert f"job {bad}: Deleted" in deleted.stdout
    twice = dirac("jobs", "delete", bad, "999999")
    assert twice.returncode == 1
    assert "already deleted" in twice.stderr and "job 999999 does not exist" in twice.stderr


def test_bad_input_is_a_message(engine: Service) -> None:
    unreadable = dirac("jobs", "search", "--filter", "Status~Failed")
    assert unreadable.returncode == 1 and "cannot read the filter" in unreadable.stderr
    unknown = dirac("jobs", "search", "--filter", "colour=red")
    assert unknown.returncode == 1 and "unknown job attribute 'colour'" in unknown.stderr
    bad_sort = dirac("jobs", "search", "--sort", "name:sideways")
    assert bad_sort.returncode == 1 and "unknown sort direction" in bad_sort.stderr
    for proc in (unreadable, unknown, bad_sort):
        no_traceback(proc)


def test_python_session(engine: Service, tmp_path: Path) -> None:
    """The same API from Python: ``Session.search_jobs``, ``job_summary``, ``set_job_status``."""
    from diracx.api import connect

    jobs = failed_pipeline(tmp_path)
    pid, bad, after = jobs["pipeline"], jobs["bad"]["id"], jobs["after"]["id"]
    mine = {"parameter": "pipeline_id", "operator": "eq", "value": pid}
    with connect() as s:
        page = s.search_jobs([mine], sort=[{"parameter": "name"}], per_page=1)
        assert (page.total, page.first, [j["name"] for j in page.jobs]) == (2, 0, ["after"])
        assert s.job_summary(["status"], [mine]) == [{"status": "Failed", "count": 2}]
        result = s.set_job_status(
            {after: {"MinorStatus": "looked at", "Source": "me"}, bad: {"Status": "Running"}}
        )
        assert result.success[after].minor_status == "looked at"
        assert "Failed -> Running is not a legal transition" in result.failed[bad]
        assert s.job_history(after)[-1].source == "me"
