"""The dry run (POST /api/pipelines/plan) and force, over HTTP."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient

from diracx.core.derivation import DrvInput, Matcher
from diracx.core.store import LocalStore
from diracx.db.pipelines import PipelineDB
from diracx.routers.queue import RecordingJobQueue

from .test_pipelines import build, command, submission


def reasons(client: TestClient, body: dict[str, object]) -> list[tuple[str, str, str]]:
    r = client.post("/api/pipelines/plan", json=body)
    assert r.status_code == 200, r.text
    return [(s["name"], s["action"], s["reason"]) for s in r.json()["stages"]]


def test_plan_says_why_and_records_nothing(
    client: TestClient,
    job_queue: RecordingJobQueue,
    pipeline_db: PipelineDB,
    store: LocalStore,
    row_counts: Callable[[], dict[str, int]],
) -> None:
    src = command("src", "echo", "hi")
    use = command("use", inputs={"src": DrvInput(drv=src.dref)})
    body = submission(src, use)
    before = row_counts()
    assert reasons(client, body) == [
        ("src", "build", "never built"),
        ("use", "build", "never built"),
    ]
    assert row_counts() == before and job_queue.sent == []

    first = client.post("/api/pipelines", json=body).json()["pipeline"]
    jobs = {s["name"]: s["job_id"] for s in first["stages"]}
    build(client, pipeline_db, store, [jobs["src"]])
    plan = reasons(client, body)
    assert plan[0][:2] == ("src", "reuse") and plan[0][2].startswith("cached (RRef ")
    assert plan[1][:2] == ("use", "join") and plan[1][2].startswith("never built (job ")
    build(client, pipeline_db, store, [jobs["use"]])
    assert [a for _, a, _ in reasons(client, body)] == ["reuse", "reuse"]

    forced = reasons(client, {**body, "force": ["src"]})
    assert forced == [
        ("src", "build", "forced"),
        ("use", "build", "input 'src' is rebuilt (reused if unchanged)"),
    ]
    r = client.post("/api/pipelines", json={**body, "force": [src.dref]})
    assert r.status_code == 201, r.text
    assert r.json()["pipeline"]["counts"] == {"Waiting": 1, "Checking": 1}


def test_force_of_an_unknown_stage_and_a_matcher_in_error(
    client: TestClient, row_counts: Callable[[], dict[str, int]]
) -> None:
    src = command("src")
    before = row_counts()
    for path in ("/api/pipelines", "/api/pipelines/plan"):
        r = client.post(path, json={**submission(src), "force": ["nope"]})
        assert r.status_code == 400
        assert "force names 'nope'" in r.json()["detail"]
    pinned = command("src", matcher=Matcher.of("exact", rrefs=["ab" * 32]))
    r = client.post("/api/pipelines", json=submission(pinned))
    assert r.status_code == 409 and "ab" * 32 in r.json()["detail"]
    plan = reasons(client, submission(pinned))
    assert plan[0][1] == "error" and "ab" * 32 in plan[0][2]
    r = client.post("/api/pipelines/plan", json={**submission(src), "derivations": {}})
    assert r.status_code == 422
    assert row_counts() == before
