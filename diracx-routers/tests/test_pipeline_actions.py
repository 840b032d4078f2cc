"""GET /api/pipelines, POST /api/pipelines/{id}/cancel and /retry, PATCH
/api/jobs/heartbeat: two VOs with real tokens, owners and VOAdmins, on SQLite and
PostgreSQL (the conftest's users and ``quota_vo_config``)."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from diracx.core.config import Config
from diracx.core.derivation import Derivation
from diracx.core.store import LocalStore
from diracx.db.pipelines import PipelineDB
from diracx.routers.queue import RecordingJobQueue

from .conftest import User, quota_vo_config
from .test_pipelines import command
from .test_vo_jobs import build, job_ids, same_answer

ABSENT = 10**9  # an id nothing has


@pytest.fixture
def app_config() -> Config:
    return quota_vo_config()


def listed(user: User, **params: Any) -> dict[str, Any]:
    r = user.get("/api/pipelines", params=params)
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    return page


def ids_of(page: dict[str, Any]) -> list[int]:
    return [p["id"] for p in page["pipelines"]]


def fail(user: User, job_id: int) -> None:
    r = user.request("PATCH", "/api/jobs/status", json={str(job_id): {"Status": "Failed"}})
    assert r.status_code == 200 and r.json()["failed"] == {}, r.text


def status_of(user: User, job_id: int) -> str:
    status: str = user.get(f"/api/jobs/{job_id}").json()["status"]
    return status


# -- list --------------------------------------------------------------------------------


def test_list_is_newest_first_per_vo_with_a_cursor_and_filters(
    client: TestClient,
    alice: User,
    bob: User,
    carol: User,
    pipeline_db: PipelineDB,
    store: LocalStore,
    chain: list[Derivation],
) -> None:
    running = bob.submit(*chain)
    solo = bob.submit(command("solo", "echo", "solo"))
    build(client, pipeline_db, store, [job_ids(solo)["solo"]])
    cached = bob.submit(command("solo", "echo", "solo"))  # reuses solo's realization
    mine = alice.submit(command("alone", "echo", "alice"))
    theirs = carol.submit(*chain)

    page = listed(bob)
    assert ids_of(page) == [mine["id"], cached["id"], solo["id"], running["id"]]
    assert page["next_cursor"] is None
    first = page["pipelines"][-1]
    assert first["owner"] == "bob" and first["target_count"] == 1
    assert first["status"] == "Running" and first["counts"] == {"Checking": 2, "Waiting": 1}
    assert datetime.fromisoformat(first["created"]) == datetime.fromisoformat(running["created"])
    by_id = {p["id"]: p for p in page["pipelines"]}
    assert by_id[solo["id"]]["status"] == "Done" and by_id[solo["id"]]["counts"] == {"Done": 1}
    assert by_id[cached["id"]]["status"] == "Done"
    assert by_id[cached["id"]]["counts"] == {"cached": 1}
    assert listed(alice) == page  # the VO's list, whoever asks
    assert ids_of(listed(carol)) == [theirs["id"]]

    # pages of 2: the cursor goes on where the last one ended, whatever comes meanwhile
    one = listed(bob, limit=2)
    assert ids_of(one) == [mine["id"], cached["id"]] and one["next_cursor"] == cached["id"]
    newer = bob.submit(command("newer", "echo", "newer"))
    two = listed(bob, limit=2, cursor=one["next_cursor"])
    assert ids_of(two) == [solo["id"], running["id"]] and two["next_cursor"] is None
    assert ids_of(listed(bob, limit=1))[0] == newer["id"]

    # filters
    assert ids_of(listed(bob, owner="alice")) == [mine["id"]]
    assert ids_of(listed(bob, owner="carol")) == []  # another VO's user: nothing
    assert ids_of(listed(bob, status="Done")) == [cached["id"], solo["id"]]
    assert ids_of(listed(bob, status="Running")) == [newer["id"], mine["id"], running["id"]]
    assert ids_of(listed(bob, status="Failed")) == []
    fail(bob, job_ids(running)["a"])
    assert ids_of(listed(bob, status="Failed")) == [running["id"]]
    failed = listed(bob, status="Failed", owner="bob")["pipelines"][0]
    assert failed["counts"] == {"Failed": 3} and failed["status"] == "Failed"
    assert ids_of(listed(bob, status="Failed", owner="alice")) == []
    assert ids_of(listed(carol, status="Running")) == [theirs["id"]]  # dteam's are untouched

    for bad in ({"limit": 0}, {"limit": 501}, {"status": "running?"}, {"cursor": 0}):
        assert bob.get("/api/pipelines", params=bad).status_code == 422, bad


# -- cancel (and kill, its former name) ----------------------------------------------------


def test_cancel_kills_the_live_jobs_and_kill_still_does(
    alice: User, alice_user: User, bob: User, carol: User, chain: list[Derivation]
) -> None:
    pipeline = bob.submit(*chain)
    pid, ids = pipeline["id"], job_ids(pipeline)
    for path in ("cancel", "kill"):
        theirs = carol.post(f"/api/pipelines/{pid}/{path}")
        none = carol.post(f"/api/pipelines/{ABSENT}/{path}")
        assert theirs.status_code == 404
        same_answer(theirs, none, pid, ABSENT)
        r = alice_user.post(f"/api/pipelines/{pid}/{path}")
        assert r.status_code == 403
        assert r.json()["detail"] == (
            f"pipeline {pid} belongs to user 'bob': only its owner or a user with the "
            "VOAdmin property may kill it"
        )
    r = bob.post(f"/api/pipelines/{pid}/cancel")
    assert r.status_code == 200, r.text
    assert r.json() == {"killed": sorted(ids.values()), "failed": []}
    assert status_of(bob, ids["c"]) == "Killed"
    for path in ("cancel", "kill"):
        again = bob.post(f"/api/pipelines/{pid}/{path}")
        assert again.status_code == 409
        assert again.json()["detail"] == f"pipeline {pid} has no live job to kill (it is Failed)"
    other = bob.submit(command("other", "echo", "other"))
    r = alice.post(f"/api/pipelines/{other['id']}/kill")  # a VOAdmin, by the former name
    assert r.status_code == 200 and r.json()["killed"] == [job_ids(other)["other"]]


# -- retry ------------------------------------------------------------------------------------


def test_retry_reschedules_the_failed_jobs_and_those_that_failed_because_of_them(
    client: TestClient,
    alice: User,
    alice_user: User,
    bob: User,
    carol: User,
    job_queue: RecordingJobQueue,
    chain: list[Derivation],
) -> None:
    pipeline = bob.submit(*chain)
    pid, ids = pipeline["id"], job_ids(pipeline)
    r = bob.post(f"/api/pipelines/{pid}/retry")
    assert r.status_code == 409
    assert r.json()["detail"] == (
        f"pipeline {pid} has no failed or killed job to retry (it is Running)"
    )
    fail(bob, ids["a"])  # b and c fail because of it
    assert status_of(bob, ids["c"]) == "Failed"

    theirs = carol.post(f"/api/pipelines/{pid}/retry")
    none = carol.post(f"/api/pipelines/{ABSENT}/retry")
    assert theirs.status_code == 404 and theirs.json()["detail"] == f"pipeline {pid} does not exist"
    same_answer(theirs, none, pid, ABSENT)
    r = alice_user.post(f"/api/pipelines/{pid}/retry")
    assert r.status_code == 403
    assert r.json()["detail"] == (
        f"pipeline {pid} belongs to user 'bob': only its owner or a user with the VOAdmin "
        "property may retry it"
    )
    assert status_of(bob, ids["a"]) == "Failed"

    queued = len(job_queue.job_ids)
    r = bob.post(f"/api/pipelines/{pid}/retry")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "retried": [
            {"id": ids["a"], "name": "a", "status": "Waiting"},
            {"id": ids["b"], "name": "b", "status": "Checking"},
            {"id": ids["c"], "name": "c", "status": "Checking"},
        ],
        "skipped": {},
    }
    assert job_queue.job_ids[queued:] == [ids["a"]]  # only the ready one
    job = bob.get(f"/api/jobs/{ids['b']}").json()
    assert job["attempt"] == 2
    assert [h["status"] for h in job["history"][-2:]] == ["Rescheduled", "Checking"]
    assert job["minor_status"] == f"Rescheduled by bob (retry of pipeline {pid})"
    assert bob.get(f"/api/pipelines/{pid}").json()["status"] == "Running"

    # cancelled, then retried by a VOAdmin
    assert bob.post(f"/api/pipelines/{pid}/cancel").status_code == 200
    r = alice.post(f"/api/pipelines/{pid}/retry")
    assert r.status_code == 200, r.text
    assert [j["status"] for j in r.json()["retried"]] == ["Waiting", "Checking", "Checking"]
    assert status_of(bob, ids["a"]) == "Waiting"


def test_retry_builds_on_what_is_done_and_spares_other_users_jobs(
    client: TestClient,
    alice_user: User,
    bob: User,
    pipeline_db: PipelineDB,
    store: LocalStore,
    chain: list[Derivation],
) -> None:
    pipeline = bob.submit(*chain)
    pid, ids = pipeline["id"], job_ids(pipeline)
    build(client, pipeline_db, store, [ids["a"]])
    fail(bob, ids["b"])  # c fails because of it; a stays Done
    r = bob.post(f"/api/pipelines/{pid}/retry")
    assert r.status_code == 200, r.text
    assert r.json()["retried"] == [
        {"id": ids["b"], "name": "b", "status": "Waiting"},
        {"id": ids["c"], "name": "c", "status": "Checking"},
    ]
    # alice's pipeline joined bob's jobs: she may not retry them
    joined = alice_user.submit(*chain)
    assert job_ids(joined) == {**ids, "a": None}  # a is cached, b and c joined
    assert bob.post(f"/api/pipelines/{pid}/cancel").status_code == 200
    r = alice_user.post(f"/api/pipelines/{joined['id']}/retry")
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert detail.startswith(
        f"pipeline {joined['id']} has no job that can be retried: job {ids['b']} belongs to "
        "user 'bob': only its owner or a user with the VOAdmin property may reschedule it; "
    )
    assert status_of(bob, ids["b"]) == "Killed"


def test_retry_counts_against_the_running_jobs_quota(dave: User, chain: list[Derivation]) -> None:
    pipeline = dave.submit(*chain)  # 3 live jobs: the quota
    pid = pipeline["id"]
    assert dave.post(f"/api/pipelines/{pid}/cancel").status_code == 200
    dave.submit(command("one", "echo", "1"))  # 1 live
    r = dave.post(f"/api/pipelines/{pid}/retry")
    assert r.status_code == 403
    assert r.json()["detail"].startswith(
        f"VO 'limited' may run 3 jobs at once; 1 are running and retrying pipeline {pid} adds 3"
    )
    assert {status_of(dave, j) for j in job_ids(pipeline).values()} == {"Killed"}


# -- heartbeats ----------------------------------------------------------------------------


def test_heartbeats_of_running_jobs_of_the_callers_vo(
    client: TestClient,
    alice: User,
    alice_user: User,
    bob: User,
    carol: User,
    pipeline_db: PipelineDB,
    chain: list[Derivation],
) -> None:
    ids = job_ids(bob.submit(*chain))
    assert client.portal is not None
    claim = functools.partial(pipeline_db.claim, [ids["a"]], "test-worker", start=True)
    client.portal.call(claim)

    def beat_time() -> Any:
        (row,) = bob.search(
            {
                "parameters": ["heartbeat"],
                "search": [{"parameter": "id", "operator": "eq", "value": ids["a"]}],
            }
        )
        return row["heartbeat"]

    before = beat_time()
    r = bob.request(
        "PATCH",
        "/api/jobs/heartbeat",
        json={str(ids["a"]): {"LoadAverage": 0.5, "MemoryUsed": 1024}, str(ids["b"]): {}},
    )
    assert r.status_code == 200, r.text
    assert r.json() == {
        "success": [ids["a"]],
        "failed": {
            str(ids["b"]): f"job {ids['b']} is Checking: only a Running or Completing job "
            "has heartbeats"
        },
    }
    after = beat_time()
    assert after is not None and after != before
    r = bob.request("PATCH", "/api/jobs/heartbeat", json=[ids["a"]])  # just the ids
    assert r.json() == {"success": [ids["a"]], "failed": {}}
    assert beat_time() >= after

    r = alice_user.request("PATCH", "/api/jobs/heartbeat", json=[ids["a"]])
    assert r.json() == {
        "success": [],
        "failed": {
            str(ids["a"]): f"job {ids['a']} belongs to user 'bob': only its owner or a user "
            "with the VOAdmin property may report a heartbeat of it"
        },
    }
    assert alice.request("PATCH", "/api/jobs/heartbeat", json=[ids["a"]]).json()["success"] == [
        ids["a"]
    ]
    theirs = carol.request("PATCH", "/api/jobs/heartbeat", json=[ids["a"]])
    none = carol.request("PATCH", "/api/jobs/heartbeat", json=[ABSENT])
    assert theirs.json() == {
        "success": [],
        "failed": {str(ids["a"]): f"job {ids['a']} does not exist"},
    }
    same_answer(theirs, none, ids["a"], ABSENT)
    bodies: list[Any] = ["12", {"x": {}}, [0], {"12": {"load": [1]}}]
    for bad in bodies:
        assert bob.request("PATCH", "/api/jobs/heartbeat", json=bad).status_code == 422, bad
