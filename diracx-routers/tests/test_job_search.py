"""``POST /api/jobs/search`` and ``/api/jobs/summary`` on the real app, SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, insert

from diracx.db.jobs import like_to_glob
from diracx.db.pipelines import PipelineDB
from diracx.db.schema import derivations, jobs, pipelines

T0 = datetime(2026, 1, 1, tzinfo=UTC)
# name, status, queue, cpus, worker
JOBS: list[tuple[str, str, str, int, str | None]] = [
    ("train-1", "Done", "default", 1, "w1"),
    ("train-2", "Failed", "gpu", 2, "w1"),
    ("train-3", "Running", "gpu", 4, "w2"),
    ("train-4", "Waiting", "default", 1, None),
    ("Train-5", "Failed", "default", 2, "w2"),
    ("eval-1", "Done", "default", 1, "w1"),
    ("eval-2", "Killed", "default", 1, None),
    ("eval-3", "Checking", "gpu", 4, None),
    ("100%_sure", "Done", "default", 1, "w3"),
    ("100x_sure", "Failed", "default", 1, "w3"),
    ("lint", "Stalled", "default", 2, "w2"),
    ("release", "Received", "default", 1, None),
]


def _seed(conn: Connection) -> None:
    conn.execute(insert(pipelines), [{"id": 1, "owner": "local", "created": T0, "targets": "[]"}])
    conn.execute(
        insert(derivations),
        [
            {"dref": f"{i:064x}", "name": n, "body": "{}", "created": T0}
            for i, (n, *_) in enumerate(JOBS)
        ],
    )
    conn.execute(
        insert(jobs),
        [
            {
                "id": i + 1,
                "pipeline_id": 1,
                "dref": f"{i:064x}",
                "name": name,
                "status": status,
                "minor_status": "",
                "queue": queue,
                "cpus": cpus,
                "worker": worker,
                "created": T0 + timedelta(hours=i),
                "updated": T0 + timedelta(hours=i),
            }
            for i, (name, status, queue, cpus, worker) in enumerate(JOBS)
        ],
    )


@pytest.fixture
def seeded(client: TestClient, pipeline_db: PipelineDB) -> TestClient:
    assert client.portal is not None
    client.portal.call(pipeline_db.engines.write, _seed)
    return client


def names(response: Any) -> list[str]:
    return [j["name"] for j in response.json()]


def search(client: TestClient, *filters: dict[str, Any], **body: Any) -> Any:
    params = body.pop("params", None)
    return client.post("/api/jobs/search", json={"search": list(filters), **body}, params=params)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"parameter": "status", "operator": "eq", "value": "Failed"},
            {"train-2", "Train-5", "100x_sure"},
        ),
        (
            {"parameter": "Status", "operator": "eq", "value": "Done"},
            {"train-1", "eval-1", "100%_sure"},
        ),
        (
            {"parameter": "status", "operator": "neq", "value": "Done"},
            {n for n, s, *_ in JOBS if s != "Done"},
        ),
        (
            {"parameter": "status", "operator": "in", "values": ["Killed", "Stalled"]},
            {"eval-2", "lint"},
        ),
        (
            {"parameter": "queue", "operator": "not in", "values": ["default"]},
            {"train-2", "train-3", "eval-3"},
        ),
        # like is case-sensitive on both databases
        (
            {"parameter": "name", "operator": "like", "value": "train%"},
            {f"train-{i}" for i in range(1, 5)},
        ),
        (
            {"parameter": "name", "operator": "like", "value": "eval-_"},
            {"eval-1", "eval-2", "eval-3"},
        ),
        ({"parameter": "name", "operator": "like", "value": "100\\%%"}, {"100%_sure"}),
        (
            {"parameter": "name", "operator": "like", "value": "%\\_sure"},
            {"100%_sure", "100x_sure"},
        ),
        ({"parameter": "cpus", "operator": "gt", "value": 2}, {"train-3", "eval-3"}),
        (
            {"parameter": "cpus", "operator": "lt", "value": "2"},
            {n for n, _, _, c, _ in JOBS if c < 2},
        ),
        ({"parameter": "id", "operator": "lt", "value": 3}, {"train-1", "train-2"}),
        (
            {"parameter": "created", "operator": "gt", "value": "2026-01-01T08:30:00Z"},
            {"100x_sure", "lint", "release"},
        ),
        (
            {"parameter": "worker", "operator": "eq", "value": None},
            {"train-4", "eval-2", "eval-3", "release"},
        ),
        (
            {"parameter": "worker", "operator": "neq", "value": "w1"},
            {n for n, *_, w in JOBS if w != "w1"},
        ),
    ],
)
def test_every_operator(seeded: TestClient, spec: dict[str, Any], expected: set[str]) -> None:
    response = search(seeded, spec)
    assert response.status_code == 200, response.text
    assert set(names(response)) == expected
    assert response.headers["content-range"] == f"jobs 0-{len(expected) - 1}/{len(expected)}"


def test_filters_combine_and_parameters_select_columns(seeded: TestClient) -> None:
    response = search(
        seeded,
        {"parameter": "queue", "operator": "eq", "value": "default"},
        {"parameter": "status", "operator": "in", "values": ["Done", "Failed"]},
        parameters=["JobID", "name", "status"],
    )
    assert response.status_code == 200
    rows = response.json()
    assert {tuple(r) for r in rows} == {("id", "name", "status")}
    assert [r["name"] for r in rows] == ["train-1", "Train-5", "eval-1", "100%_sure", "100x_sure"]


def test_sort(seeded: TestClient) -> None:
    by_cpus = search(
        seeded,
        sort=[
            {"parameter": "cpus", "direction": "desc"},
            {"parameter": "name", "direction": "asc"},
        ],
    )
    got = [(j["cpus"], j["name"]) for j in by_cpus.json()]
    assert got == sorted(((c, n) for n, _, _, c, _ in JOBS), key=lambda x: (-x[0], x[1]))
    newest = search(seeded, sort=[{"parameter": "id", "direction": "desc"}], params={"per_page": 3})
    assert [j["id"] for j in newest.json()] == [12, 11, 10]
    created = search(seeded, sort=[{"parameter": "created", "direction": "desc"}])
    assert created.json()[0]["name"] == "release"
    assert created.json()[0]["created"].startswith("2026-01-01T11:00:00")


def test_pagination_206_200_416(seeded: TestClient) -> None:
    pages = [search(seeded, params={"page": p, "per_page": 5}) for p in (1, 2, 3)]
    assert [p.status_code for p in pages] == [206, 206, 206]
    assert [p.headers["content-range"] for p in pages] == [
        "jobs 0-4/12",
        "jobs 5-9/12",
        "jobs 10-11/12",
    ]
    assert [j["id"] for p in pages for j in p.json()] == list(range(1, 13))

    past = search(seeded, params={"page": 4, "per_page": 5})
    assert past.status_code == 416
    assert past.headers["content-range"] == "jobs */12"
    assert "past the 12 matching job(s)" in past.json()["detail"]

    whole = search(seeded, params={"per_page": 12})
    assert whole.status_code == 200 and len(whole.json()) == 12
    assert whole.headers["content-range"] == "jobs 0-11/12"

    nothing = search(seeded, {"parameter": "status", "operator": "eq", "value": "Deleted"})
    assert (nothing.status_code, nothing.json()) == (200, [])
    assert (
        search(
            seeded,
            {"parameter": "status", "operator": "eq", "value": "Deleted"},
            params={"page": 2},
        ).status_code
        == 416
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"search": [{"parameter": "colour", "operator": "eq", "value": 1}]},
            "unknown job attribute 'colour'",
        ),
        (
            {"search": [{"parameter": "status", "operator": "~", "value": 1}]},
            "unknown operator '~'",
        ),
        (
            {"search": [{"parameter": "status", "operator": "in", "value": "Done"}]},
            "needs 'values'",
        ),
        (
            {"search": [{"parameter": "status", "operator": "eq", "values": ["Done"]}]},
            "takes 'value'",
        ),
        ({"search": [{"parameter": "cpus", "operator": "like", "value": "1%"}]}, "applies to text"),
        (
            {"search": [{"parameter": "cpus", "operator": "gt", "value": "many"}]},
            "cpus is an integer",
        ),
        (
            {"search": [{"parameter": "created", "operator": "gt", "value": "yesterday"}]},
            "not ISO 8601",
        ),
        ({"search": [{"parameter": "cpus", "operator": "gt"}]}, "needs a 'value'"),
        ({"sort": [{"parameter": "name", "direction": "up"}]}, "unknown sort direction 'up'"),
        ({"sort": [{"parameter": "secret"}]}, "unknown job attribute 'secret'"),
        ({"parameters": ["id", "body"]}, "unknown job attribute 'body'"),
        # what the database could not take is a 400 too, never a 500
        ({"search": [{"parameter": "id", "operator": "eq", "value": 2**70}]}, "out of range"),
        ({"search": [{"parameter": "cpus", "operator": "eq", "value": "9" * 5000}]}, "integer"),
        ({"search": [{"parameter": "name", "operator": "eq", "value": "a\x00b"}]}, "NUL"),
        (
            {
                "search": [
                    {"parameter": "created", "operator": "lt", "value": "0001-01-01T00:00+14:00"}
                ]
            },
            "out of range",
        ),
    ],
)
def test_bad_searches_are_400_with_a_message(
    seeded: TestClient, body: dict[str, Any], message: str
) -> None:
    response = seeded.post("/api/jobs/search", json=body)
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"]


def test_a_lone_surrogate_is_a_400(seeded: TestClient) -> None:
    body = b'{"search": [{"parameter": "name", "operator": "like", "value": "\\ud800%"}]}'
    response = seeded.post(
        "/api/jobs/search", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert "lone surrogate" in response.json()["detail"]


def test_bad_pages_are_422(seeded: TestClient) -> None:
    assert search(seeded, params={"page": 0}).status_code == 422
    assert search(seeded, params={"per_page": 100_000}).status_code == 422
    assert search(seeded, params={"page": 10**12}).status_code == 422
    many = {"parameter": "id", "operator": "in", "values": list(range(1001))}
    assert search(seeded, many).status_code == 422  # bound parameters are limited


def test_summary(seeded: TestClient) -> None:
    response = seeded.post("/api/jobs/summary", json={"grouping": ["status"]})
    assert response.status_code == 200, response.text
    counts = {r["status"]: r["count"] for r in response.json()}
    assert counts == {
        "Checking": 1,
        "Done": 3,
        "Failed": 3,
        "Killed": 1,
        "Received": 1,
        "Running": 1,
        "Stalled": 1,
        "Waiting": 1,
    }

    two = seeded.post(
        "/api/jobs/summary",
        json={
            "grouping": ["Status", "queue"],
            "search": [{"parameter": "name", "operator": "like", "value": "train%"}],
        },
    )
    assert two.json() == [
        {"status": "Done", "queue": "default", "count": 1},
        {"status": "Failed", "queue": "gpu", "count": 1},
        {"status": "Running", "queue": "gpu", "count": 1},
        {"status": "Waiting", "queue": "default", "count": 1},
    ]
    bad = seeded.post("/api/jobs/summary", json={"grouping": ["nope"]})
    assert bad.status_code == 400 and "unknown job attribute 'nope'" in bad.json()["detail"]
    assert seeded.post("/api/jobs/summary", json={"grouping": []}).status_code == 422


def test_search_needs_a_token(anonymous: TestClient) -> None:
    assert anonymous.post("/api/jobs/search", json={}).status_code == 401


@pytest.mark.parametrize(
    ("like", "glob"),
    [
        ("train%", "train*"),
        ("a_c", "a?c"),
        ("100\\%", "100%"),
        ("x*y?[z", "x[*]y[?][[]z"),
        ("\\_", "_"),
    ],
)
def test_like_to_glob(like: str, glob: str) -> None:
    assert like_to_glob(like) == glob
