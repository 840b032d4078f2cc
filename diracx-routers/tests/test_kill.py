"""``POST /api/jobs/{id}/kill`` and ``POST /api/pipelines/{id}/kill`` on the real app."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from diracx.core.derivation import Derivation
from diracx.db.pipelines import PipelineDB

from .test_pipelines import build, command, submission


def submit(client: TestClient, *drvs: Derivation) -> dict[str, Any]:
    response = client.post("/api/pipelines", json=submission(*drvs))
    assert response.status_code == 201, response.text
    pipeline: dict[str, Any] = response.json()["pipeline"]
    return pipeline


def job_ids(pipeline: dict[str, Any]) -> dict[str, int]:
    return {s["name"]: s["job_id"] for s in pipeline["stages"]}


def test_kill_a_job_fails_its_dependents(client: TestClient, chain: list[Derivation]) -> None:
    ids = job_ids(submit(client, *chain))
    response = client.post(f"/api/jobs/{ids['a']}/kill")
    assert response.status_code == 200, response.text
    assert response.json() == {"killed": [ids["a"]], "failed": sorted([ids["b"], ids["c"]])}
    job = client.get(f"/api/jobs/{ids['a']}").json()
    assert job["status"] == "Killed" and job["minor_status"] == "Killed by local"
    assert job["history"][-1]["source"] == "user"
    b = client.get(f"/api/jobs/{ids['b']}").json()
    assert (b["status"], b["minor_status"]) == ("Failed", "Input 'a' was killed")

    again = client.post(f"/api/jobs/{ids['a']}/kill")
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"job {ids['a']} already ended (Killed: Killed by local): nothing to kill"
    )


def test_kill_a_done_job_is_a_conflict(
    client: TestClient, pipeline_db: PipelineDB, store: Any
) -> None:
    a = command("a", "echo", "done")
    ids = job_ids(submit(client, a))
    build(client, pipeline_db, store, [ids["a"]])
    response = client.post(f"/api/jobs/{ids['a']}/kill")
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"job {ids['a']} already ended (Done: Built): nothing to kill"
    )


def test_kill_a_pipeline(client: TestClient, chain: list[Derivation]) -> None:
    pipeline = submit(client, *chain)
    response = client.post(f"/api/pipelines/{pipeline['id']}/kill")
    assert response.status_code == 200, response.text
    assert response.json() == {"killed": sorted(job_ids(pipeline).values()), "failed": []}
    after = client.get(f"/api/pipelines/{pipeline['id']}").json()
    assert after["status"] == "Failed" and after["counts"] == {"Killed": 3}
    minor = {s["minor_status"] for s in after["stages"]}
    assert minor == {f"Pipeline {pipeline['id']} killed by local"}
    again = client.post(f"/api/pipelines/{pipeline['id']}/kill")
    assert again.status_code == 409
    assert again.json()["detail"] == (
        f"pipeline {pipeline['id']} has no live job to kill (it is Failed)"
    )


@pytest.mark.parametrize(
    ("path", "code", "detail"),
    [
        ("/api/jobs/424242/kill", 404, "job 424242 does not exist"),
        ("/api/pipelines/424242/kill", 404, "pipeline 424242 does not exist"),
        ("/api/jobs/0/kill", 422, None),
        ("/api/pipelines/abc/kill", 422, None),
    ],
)
def test_kill_unknown_or_malformed_ids(
    client: TestClient, path: str, code: int, detail: str | None
) -> None:
    response = client.post(path)
    assert response.status_code == code
    if detail is not None:
        assert response.json() == {"detail": detail}
    else:
        assert response.json()["detail"].startswith("invalid request:")


def test_kill_needs_a_token(anonymous: TestClient, chain: list[Derivation]) -> None:
    assert anonymous.post("/api/jobs/1/kill").status_code == 401
    assert anonymous.post("/api/pipelines/1/kill").status_code == 401
