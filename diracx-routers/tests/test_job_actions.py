"""``PATCH /api/jobs/status``, history, delete and reschedule on real submissions."""

from __future__ import annotations

import functools
from typing import Any

from fastapi.testclient import TestClient

from diracx.core.derivation import Derivation
from diracx.core.store import LocalStore
from diracx.db.pipelines import PipelineDB
from diracx.routers.queue import RecordingJobQueue

from .test_kill import job_ids, submit
from .test_pipelines import build, command


def job(client: TestClient, job_id: int) -> dict[str, Any]:
    response = client.get(f"/api/jobs/{job_id}")
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


def start(client: TestClient, db: PipelineDB, job_id: int) -> None:
    """Act as a worker that claims the job and starts it (Running)."""
    assert client.portal is not None
    claim = functools.partial(db.claim, [job_id], "test-worker", start=True)
    assert [c.id for c in client.portal.call(claim)] == [job_id]


def patch(client: TestClient, changes: dict[int, dict[str, Any]]) -> dict[str, Any]:
    response = client.patch("/api/jobs/status", json={str(k): v for k, v in changes.items()})
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_legal_status_change_is_applied_with_history_and_effects(
    client: TestClient, pipeline_db: PipelineDB, chain: list[Derivation]
) -> None:
    ids = job_ids(submit(client, *chain))
    start(client, pipeline_db, ids["a"])
    result = patch(
        client, {ids["a"]: {"Status": "Failed", "MinorStatus": "Out of memory", "Source": "pilot"}}
    )
    assert result == {
        "success": {str(ids["a"]): {"status": "Failed", "minor_status": "Out of memory"}},
        "failed": {},
    }
    a = job(client, ids["a"])
    assert (a["status"], a["minor_status"]) == ("Failed", "Out of memory")
    assert a["history"][-1]["source"] == "pilot"
    b = job(client, ids["b"])  # the jobs that need it never run
    assert (b["status"], b["minor_status"]) == ("Failed", "Input 'a' failed")
    assert job(client, ids["c"])["status"] == "Failed"

    # a minor status alone
    minor = patch(client, {ids["a"]: {"MinorStatus": "Inspected", "Source": "admin"}})
    assert minor["success"][str(ids["a"])] == {"status": "Failed", "minor_status": "Inspected"}
    history = client.get(f"/api/jobs/{ids['a']}/history").json()
    assert [(h["status"], h["minor_status"], h["source"]) for h in history[-2:]] == [
        ("Failed", "Out of memory", "pilot"),
        ("Failed", "Inspected", "admin"),
    ]


def test_illegal_changes_are_refused_per_job_and_nothing_is_applied(
    client: TestClient, pipeline_db: PipelineDB, chain: list[Derivation]
) -> None:
    ids = job_ids(submit(client, *chain))
    start(client, pipeline_db, ids["a"])
    before = {n: job(client, i) for n, i in ids.items()}
    result = patch(
        client,
        {
            ids["a"]: {"Status": "Done", "MinorStatus": "finished"},  # legal, but DiracX's own
            ids["b"]: {"Status": "Running"},  # Checking -> Running: illegal
            ids["c"]: {"Status": "Stalled"},  # Checking -> Stalled: illegal
            999_999: {"Status": "Killed"},
        },
    )
    assert result["success"] == {}
    failed = result["failed"]
    assert "Done is set by DiracX itself" in failed[str(ids["a"])]
    assert failed[str(ids["b"])] == (
        f"job {ids['b']}: Checking -> Running is not a legal transition "
        "(from Checking: Deleted, Failed, Killed, Waiting)"
    )
    assert "Checking -> Stalled is not a legal transition" in failed[str(ids["c"])]
    assert failed["999999"] == "job 999999 does not exist"
    assert {n: job(client, i) for n, i in ids.items()} == before  # history included

    # a batch mixing a legal and an illegal change applies the legal one only
    mixed = patch(client, {ids["a"]: {"Status": "Stalled"}, ids["b"]: {"Status": "Done"}})
    assert list(mixed["success"]) == [str(ids["a"])]
    assert list(mixed["failed"]) == [str(ids["b"])]
    assert job(client, ids["a"])["status"] == "Stalled"
    assert job(client, ids["b"]) == before["b"]

    rescheduled = patch(client, {ids["a"]: {"Status": "Rescheduled"}})
    assert "POST /api/jobs/" in rescheduled["failed"][str(ids["a"])]
    bad = client.patch("/api/jobs/status", json={"x": {"Status": "Failed"}})
    assert bad.status_code == 422
    bad = client.patch("/api/jobs/status", json={"1": {"Status": "Exploded"}})
    assert bad.status_code == 422
    bad = client.patch("/api/jobs/status", json={str(2**64): {"Status": "Failed"}})
    assert bad.status_code == 422
    assert client.get(f"/api/jobs/{2**64}/history").status_code == 422
    bad = client.patch("/api/jobs/status", json={"1": {"MinorStatus": "a\x00b"}})
    assert bad.status_code == 422 and "NUL" in bad.json()["detail"]


def test_history_route(client: TestClient, chain: list[Derivation]) -> None:
    ids = job_ids(submit(client, *chain))
    history = client.get(f"/api/jobs/{ids['a']}/history")
    assert history.status_code == 200
    assert history.json() == job(client, ids["a"])["history"]
    assert [h["status"] for h in history.json()] == ["Received", "Waiting"]
    missing = client.get("/api/jobs/999999/history")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "job 999999 does not exist"


def test_delete_only_ended_jobs(client: TestClient, chain: list[Derivation]) -> None:
    ids = job_ids(submit(client, *chain))
    live = client.delete(f"/api/jobs/{ids['a']}")
    assert live.status_code == 409
    assert "only an ended job" in live.json()["detail"] and "kill it first" in live.json()["detail"]
    assert client.post(f"/api/jobs/{ids['a']}/kill").status_code == 200
    deleted = client.delete(f"/api/jobs/{ids['a']}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {
        "id": ids["a"],
        "status": "Deleted",
        "minor_status": "Deleted by local",
    }
    assert [h["status"] for h in job(client, ids["a"])["history"]][-2:] == ["Killed", "Deleted"]
    again = client.delete(f"/api/jobs/{ids['a']}")
    assert (again.status_code, again.json()["detail"]) == (
        409,
        f"job {ids['a']} is already deleted",
    )
    assert client.delete("/api/jobs/999999").status_code == 404
    # the deleted job is still found by a search for Deleted jobs
    found = client.post(
        "/api/jobs/search",
        json={"search": [{"parameter": "status", "operator": "eq", "value": "Deleted"}]},
    )
    assert [j["id"] for j in found.json()] == [ids["a"]]


def test_reschedule_requeues_and_respects_inputs(
    client: TestClient,
    pipeline_db: PipelineDB,
    store: LocalStore,
    job_queue: RecordingJobQueue,
    chain: list[Derivation],
) -> None:
    ids = job_ids(submit(client, *chain))
    assert client.post(f"/api/jobs/{ids['a']}/kill").status_code == 200  # b and c fail

    live = client.post(f"/api/jobs/{ids['b']}/reschedule")
    assert live.status_code == 409
    assert live.json()["detail"] == (
        f"job {ids['b']} needs input job {ids['a']} ('a'), which is Killed: "
        "reschedule that one first"
    )
    queued_before = list(job_queue.job_ids)
    a = client.post(f"/api/jobs/{ids['a']}/reschedule")
    assert a.status_code == 200, a.text
    assert a.json() == {"id": ids["a"], "status": "Waiting", "minor_status": "Rescheduled by local"}
    assert job_queue.job_ids == [*queued_before, ids["a"]]  # through the job queue, as submit
    info = job(client, ids["a"])
    assert info["attempt"] == 2
    assert [h["status"] for h in info["history"]][-3:] == ["Killed", "Rescheduled", "Waiting"]

    b = client.post(f"/api/jobs/{ids['b']}/reschedule")
    assert (b.status_code, b.json()["status"]) == (200, "Checking")  # a is not built yet
    assert job_queue.job_ids == [*queued_before, ids["a"]]
    waiting = client.post(f"/api/jobs/{ids['a']}/reschedule")
    assert waiting.status_code == 409
    assert "only Failed, Killed or Stalled" in waiting.json()["detail"]

    # a is built (by a worker, which queues what it releases): b is released
    build(client, pipeline_db, store, [ids["a"]])
    assert job(client, ids["b"])["status"] == "Waiting"
    done = client.post(f"/api/jobs/{ids['a']}/reschedule")
    assert done.status_code == 409 and "is Done" in done.json()["detail"]
    assert client.post("/api/jobs/999999/reschedule").status_code == 404


def test_reschedule_a_stalled_job(
    client: TestClient, pipeline_db: PipelineDB, job_queue: RecordingJobQueue
) -> None:
    ids = job_ids(submit(client, command("solo", "echo", "stall")))
    start(client, pipeline_db, ids["solo"])
    assert patch(client, {ids["solo"]: {"Status": "Stalled"}})["failed"] == {}
    response = client.post(f"/api/jobs/{ids['solo']}/reschedule")
    assert response.status_code == 200, response.text
    info = job(client, ids["solo"])
    assert (info["status"], info["worker"], info["attempt"]) == ("Waiting", None, 2)
    assert job_queue.job_ids[-1] == ids["solo"]
