"""Submitting pipelines, reading them back, following their events."""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from diracx.core.derivation import Derivation, DrvInput, TreeInput, realization_ref
from diracx.core.store import LocalStore
from diracx.core.tree import Tree, TreeEntry, ingest_directory
from diracx.db.pipelines import BuildSuccess, PipelineDB
from diracx.db.visibility import claim_blobs
from diracx.routers.queue import RecordingJobQueue

Z = "0" * 64


def command(name: str, *argv: str, **fields: Any) -> Derivation:
    """A process-stage derivation (``argv`` defaults to ``true``)."""
    return Derivation(
        name=name, builder={"executor": "process", "argv": list(argv or ["true"])}, **fields
    )


def submission(*drvs: Derivation, targets: list[str] | None = None) -> dict[str, Any]:
    """The JSON body of ``POST /api/pipelines`` (targets default to the last stage)."""
    return {
        "derivations": {d.dref: d.model_dump(mode="json") for d in drvs},
        "targets": targets if targets is not None else [drvs[-1].dref],
    }


def build(client: TestClient, db: PipelineDB, store: LocalStore, job_ids: list[int]) -> None:
    """Act as a worker: claim the jobs and record an (empty) realization for each."""
    empty = Tree({})
    store.put_bytes(empty.manifest_bytes())
    assert client.portal is not None
    claimed = client.portal.call(functools.partial(db.claim, job_ids, "test-worker", start=True))
    assert [c.id for c in claimed] == job_ids
    now = datetime.now(UTC)
    successes = []
    for job in claimed:
        context = {name: [inp.rref] for name, inp in job.inputs.items()}
        rref = realization_ref(job.dref, context, empty.digest)
        successes.append(
            BuildSuccess(
                job_id=job.id,
                dref=job.dref,
                output=empty.digest,
                context=context,
                rref=rref,
                log=None,
                started=now,
                finished=now,
            )
        )
    client.portal.call(db.finish, "test-worker", successes, [])


@pytest.fixture
def diamond() -> list[Derivation]:
    """src -> (lint, test) -> release."""
    src = command("src", "echo", "hello")
    lint = command("lint", inputs={"src": DrvInput(drv=src.dref)})
    test = command("test", inputs={"src": DrvInput(drv=src.dref)}, config={"n": 3})
    release = command(
        "release",
        inputs={"lint": DrvInput(drv=lint.dref), "test": DrvInput(drv=test.dref)},
    )
    return [src, lint, test, release]


def test_submit_creates_stages_and_queues_ready_jobs(
    client: TestClient, job_queue: RecordingJobQueue, diamond: list[Derivation]
) -> None:
    r = client.post("/api/pipelines", json=submission(*diamond))
    assert r.status_code == 201, r.text
    pipeline = r.json()["pipeline"]
    stages = {s["name"]: s for s in pipeline["stages"]}
    assert set(stages) == {"src", "lint", "test", "release"}
    assert pipeline["owner"] == "local"
    assert pipeline["status"] == "Running"
    assert pipeline["targets"] == [diamond[-1].dref]
    assert not any(s["cached"] for s in stages.values())
    assert stages["src"]["status"] == "Waiting"
    assert {stages[n]["status"] for n in ("lint", "test", "release")} == {"Checking"}
    assert job_queue.job_ids == [stages["src"]["job_id"]]  # only what is ready is queued

    got = client.get(f"/api/pipelines/{pipeline['id']}")
    assert got.status_code == 200
    assert got.json() == pipeline

    job = client.get(f"/api/jobs/{stages['src']['job_id']}").json()
    assert job["name"] == "src"
    assert [h["status"] for h in job["history"]] == ["Received", "Waiting"]


def test_resubmission_after_build_is_all_cached(
    client: TestClient,
    job_queue: RecordingJobQueue,
    pipeline_db: PipelineDB,
    store: LocalStore,
    diamond: list[Derivation],
) -> None:
    first = client.post("/api/pipelines", json=submission(*diamond)).json()["pipeline"]
    jobs = {s["name"]: s["job_id"] for s in first["stages"]}
    for wave in (["src"], ["lint", "test"], ["release"]):
        build(client, pipeline_db, store, [jobs[n] for n in wave])
    done = client.get(f"/api/pipelines/{first['id']}").json()
    assert done["status"] == "Done"
    assert all(s["rref"] for s in done["stages"])

    job_queue.sent.clear()
    again = client.post("/api/pipelines", json=submission(*diamond))
    assert again.status_code == 201
    pipeline = again.json()["pipeline"]
    assert all(s["cached"] and s["job_id"] is None for s in pipeline["stages"])
    assert pipeline["counts"] == {"cached": 4}
    assert pipeline["status"] == "Done"
    assert job_queue.sent == []  # nothing to build, nothing queued

    # realizations are readable by RRef and by DRef
    release = next(s for s in pipeline["stages"] if s["name"] == "release")
    real = client.get(f"/api/realizations/{release['rref']}")
    assert real.status_code == 200
    assert real.json()["dref"] == release["dref"]
    assert set(real.json()["context"]) == {"lint", "test"}
    listed = client.get(f"/api/derivations/{release['dref']}/realizations")
    assert [x["rref"] for x in listed.json()] == [release["rref"]]


def test_changing_config_rebuilds_only_downstream(
    client: TestClient,
    pipeline_db: PipelineDB,
    store: LocalStore,
    diamond: list[Derivation],
) -> None:
    first = client.post("/api/pipelines", json=submission(*diamond)).json()["pipeline"]
    jobs = {s["name"]: s["job_id"] for s in first["stages"]}
    for wave in (["src"], ["lint", "test"], ["release"]):
        build(client, pipeline_db, store, [jobs[n] for n in wave])
    src, lint, _, _ = diamond
    test2 = command("test", inputs={"src": DrvInput(drv=src.dref)}, config={"n": 4})
    release2 = command(
        "release", inputs={"lint": DrvInput(drv=lint.dref), "test": DrvInput(drv=test2.dref)}
    )
    pipeline = client.post("/api/pipelines", json=submission(src, lint, test2, release2))
    cached = {s["name"]: s["cached"] for s in pipeline.json()["pipeline"]["stages"]}
    assert cached == {"src": True, "lint": True, "test": False, "release": False}


# -- bad pipelines: a 4xx with a clear message, and nothing stored --------------------------


def _cycle() -> dict[str, Any]:
    a_key, b_key = "a" * 64, "b" * 64
    a = command("a", inputs={"x": DrvInput(drv=b_key)})
    b = command("b", inputs={"y": DrvInput(drv=a_key)})
    return {
        "derivations": {a_key: a.model_dump(mode="json"), b_key: b.model_dump(mode="json")},
        "targets": [a_key],
    }


def _hash_mismatch() -> dict[str, Any]:
    body = submission(command("lies"))
    (real,) = body["derivations"]
    return {"derivations": {Z: body["derivations"][real]}, "targets": [Z]}


def _missing_input() -> dict[str, Any]:
    return submission(command("orphan", inputs={"dep": DrvInput(drv="c" * 64)}))


def _missing_tree() -> dict[str, Any]:
    return submission(command("needs-src", inputs={"src": TreeInput(tree="d" * 64)}))


def _unknown_executor() -> dict[str, Any]:
    drv = {"name": "exotic", "builder": {"executor": "quantum", "qubits": 3}}
    return {"derivations": {Z: drv}, "targets": [Z]}


def _unknown_target() -> dict[str, Any]:
    body = submission(command("a"))
    body["targets"] = ["e" * 64]
    return body


def _bad_name() -> dict[str, Any]:
    drv = {"name": "../etc", "builder": {"executor": "process", "argv": ["true"]}}
    return {"derivations": {Z: drv}, "targets": [Z]}


def _bad_builder() -> dict[str, Any]:
    drv = {"name": "a", "builder": {"executor": "process", "argv": []}}
    return {"derivations": {Z: drv}, "targets": [Z]}


BAD_PIPELINES: dict[str, tuple[Callable[[], Any], int, str]] = {
    "cycle": (_cycle, 400, "cycle: a -> b -> a"),
    "hash mismatch": (_hash_mismatch, 400, "hash mismatch for stage 'lies'"),
    "missing input": (_missing_input, 400, "which is not part of the pipeline"),
    "missing tree": (
        _missing_tree,
        400,
        f"input 'src': blob {'d' * 64} (its tree) is not in your VO's store",
    ),
    "unknown executor": (_unknown_executor, 422, "unknown executor 'quantum'"),
    "unknown target": (_unknown_target, 400, "is not among the submitted derivations"),
    "bad stage name": (_bad_name, 422, "stage name '../etc' must be"),
    "bad builder": (_bad_builder, 422, "invalid process builder"),
    "empty": (lambda: {"derivations": {}, "targets": []}, 422, "derivations"),
    "not an object": (lambda: [1, 2, 3], 422, "invalid request"),
    "extra field": (lambda: {**submission(command("a")), "extra": 1}, 422, "extra"),
}


@pytest.mark.parametrize("case", list(BAD_PIPELINES))
def test_bad_pipeline_is_rejected_and_nothing_stored(
    client: TestClient,
    job_queue: RecordingJobQueue,
    row_counts: Callable[[], dict[str, int]],
    case: str,
) -> None:
    make, code, message = BAD_PIPELINES[case]
    before = row_counts()
    r = client.post("/api/pipelines", json=make())
    assert r.status_code == code, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str)
    assert message in detail
    assert row_counts() == before
    assert job_queue.sent == []


RAW_BODIES = {
    "malformed JSON": (b'{"derivations": {', "JSON"),
    "NaN in config": (
        b'{"derivations": {"%s": {"name": "a", "builder": {"executor": "process", '
        b'"argv": ["true"]}, "config": {"x": NaN}}}, "targets": ["%s"]}' % (Z.encode(), Z.encode()),
        "NaN",
    ),
    "Infinity in config": (
        b'{"derivations": {"%s": {"name": "a", "builder": {"executor": "process", '
        b'"argv": ["true"]}, "config": {"x": [Infinity]}}}, "targets": ["%s"]}'
        % (Z.encode(), Z.encode()),
        "config must be plain JSON",
    ),
    "deeply nested": (b'{"derivations": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", ""),
    "empty body": (b"", "body"),
}


@pytest.mark.parametrize("case", list(RAW_BODIES))
def test_malformed_body_is_a_4xx_with_a_message(
    client: TestClient, row_counts: Callable[[], dict[str, int]], case: str
) -> None:
    body, message = RAW_BODIES[case]
    before = row_counts()
    r = client.post("/api/pipelines", content=body, headers={"Content-Type": "application/json"})
    assert 400 <= r.status_code < 500, r.text
    assert message in r.json()["detail"]
    assert row_counts() == before


def upload(client: TestClient, data: bytes) -> str:
    """Send a blob as a client does: it becomes the caller's VO's."""
    digest = hashlib.sha256(data).hexdigest()
    r = client.put(f"/api/blobs/{digest}", content=data)
    assert r.status_code in (200, 201), r.text
    return digest


def upload_tree(client: TestClient, store: LocalStore, tree: Tree) -> str:
    """Send a tree stored with ``ingest_directory`` (its files and manifest)."""
    for digest in sorted(tree.blob_digests()):
        upload(client, store.read_bytes(digest))
    return upload(client, tree.manifest_bytes())


def test_tree_with_a_missing_blob_is_rejected(
    client: TestClient,
    store: LocalStore,
    pipeline_db: PipelineDB,
    row_counts: Callable[[], dict[str, int]],
    tmp_path: Path,
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.py").write_text("print('hi')\n")
    tree = ingest_directory(store, src)
    ok = client.post(
        "/api/pipelines",
        json=submission(command("uses", inputs={"src": TreeInput(tree=tree.digest)})),
    )
    # in the store, but nobody sent it to the service: not the VO's
    assert ok.status_code == 400 and "is not in your VO's store" in ok.json()["detail"]
    upload_tree(client, store, tree)
    ok = client.post(
        "/api/pipelines",
        json=submission(command("uses", inputs={"src": TreeInput(tree=tree.digest)})),
    )
    assert ok.status_code == 201, ok.text

    # a second tree that lists a blob nobody has: refused as one of another VO would be
    broken = Tree({**tree.entries, "lost.txt": TreeEntry("file", "f" * 64, 3)})
    upload(client, broken.manifest_bytes())
    before = row_counts()
    bad = client.post(
        "/api/pipelines",
        json=submission(command("uses", inputs={"src": TreeInput(tree=broken.digest)})),
    )
    assert bad.status_code == 400
    assert bad.json()["detail"] == (
        f"stage 'uses' input 'src': blob {'f' * 64} ('lost.txt' in tree {broken.digest}) "
        "is not in your VO's store: upload it first"
    )
    assert row_counts() == before

    # the VO's claim on a blob the store lost: the store check still says so
    assert client.portal is not None
    client.portal.call(
        pipeline_db.engines.write, lambda conn: claim_blobs(conn, "local", {"f" * 64: 3})
    )
    before = row_counts()
    bad = client.post(
        "/api/pipelines",
        json=submission(command("uses", inputs={"src": TreeInput(tree=broken.digest)})),
    )
    assert bad.status_code == 400
    detail = bad.json()["detail"]
    assert "stage 'uses' input 'src'" in detail
    assert f"lists blob {'f' * 64} ('lost.txt'), which is not in the store" in detail
    assert "upload it first" in detail
    assert row_counts() == before


def test_python_source_must_be_in_the_store(client: TestClient) -> None:
    source = "9" * 64
    drv = Derivation(
        name="py", builder={"executor": "python", "function": "mod:fn", "source": source}
    )
    r = client.post("/api/pipelines", json=submission(drv))
    assert r.status_code == 400
    assert r.json()["detail"] == (
        f"stage 'py' python source: blob {source} (its tree) is not in your VO's store: "
        "upload it first"
    )


def test_blob_that_is_not_a_tree_is_rejected(client: TestClient) -> None:
    digest = upload(client, b"not a manifest")
    r = client.post(
        "/api/pipelines", json=submission(command("a", inputs={"t": TreeInput(tree=digest)}))
    )
    assert r.status_code == 400
    assert f"blob {digest} is not a tree" in r.json()["detail"]


# -- reading ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "code", "message"),
    [
        ("/api/pipelines/999", 404, "pipeline 999 does not exist"),
        ("/api/pipelines/999/events", 404, "pipeline 999 does not exist"),
        ("/api/jobs/999", 404, "job 999 does not exist"),
        (f"/api/realizations/{Z}", 404, f"realization {Z} does not exist"),
        ("/api/pipelines/abc", 422, "pipeline_id"),
        ("/api/jobs/0", 422, "job_id"),
        ("/api/realizations/xyz", 422, "not a SHA-256 digest"),
        ("/api/derivations/XYZ/realizations", 422, "not a SHA-256 digest"),
        ("/api/pipelines/1/events?wait=31", 422, "wait"),
        ("/api/pipelines/1/events?after=-1", 422, "after"),
    ],
)
def test_reads_of_absent_or_malformed_ids(
    client: TestClient, path: str, code: int, message: str
) -> None:
    r = client.get(path)
    assert r.status_code == code, r.text
    assert message in r.json()["detail"]


def test_realizations_of_an_unknown_derivation_is_empty(client: TestClient) -> None:
    r = client.get(f"/api/derivations/{Z}/realizations")
    assert r.status_code == 200
    assert r.json() == []


# -- events -------------------------------------------------------------------------------


def test_events_and_long_poll(
    client: TestClient, pipeline_db: PipelineDB, store: LocalStore
) -> None:
    a = command("a")
    pipeline = client.post("/api/pipelines", json=submission(a)).json()["pipeline"]
    url = f"/api/pipelines/{pipeline['id']}/events"
    first = client.get(url).json()
    assert [e["status"] for e in first["events"]] == ["Received", "Waiting"]
    assert first["finished"] is False
    last = first["last_event_id"]

    # nothing happens: the long poll returns empty after the wait
    t0 = time.monotonic()
    idle = client.get(url, params={"after": last, "wait": 0.3}).json()
    assert 0.3 <= time.monotonic() - t0 < 2
    assert idle["events"] == [] and idle["last_event_id"] == last

    # a worker claims the job while a long poll waits: it returns promptly
    result: dict[str, Any] = {}

    def poll() -> None:
        start = time.monotonic()
        result["body"] = client.get(url, params={"after": last, "wait": 10}).json()
        result["elapsed"] = time.monotonic() - start

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.2)
    build(client, pipeline_db, store, [pipeline["stages"][0]["job_id"]])
    waiter.join(timeout=10)
    assert result["elapsed"] < 3
    assert result["body"]["events"][0]["status"] == "Matched"

    # finished: the long poll answers at once
    t0 = time.monotonic()
    end = client.get(url, params={"after": 10**9, "wait": 10}).json()
    assert time.monotonic() - t0 < 1
    assert end["finished"] is True


def test_long_poll_of_a_cached_pipeline_returns_at_once(
    client: TestClient, pipeline_db: PipelineDB, store: LocalStore
) -> None:
    a = command("a")
    first = client.post("/api/pipelines", json=submission(a)).json()["pipeline"]
    build(client, pipeline_db, store, [first["stages"][0]["job_id"]])
    cached = client.post("/api/pipelines", json=submission(a)).json()["pipeline"]
    t0 = time.monotonic()
    events = client.get(f"/api/pipelines/{cached['id']}/events", params={"wait": 10}).json()
    assert time.monotonic() - t0 < 1
    assert events == {"events": [], "last_event_id": 0, "finished": True}


def test_submission_round_trips_through_json(diamond: list[Derivation]) -> None:
    """The test helper builds what a client sends: plain JSON, DRefs as keys."""
    body = json.loads(json.dumps(submission(*diamond)))
    for key, drv in body["derivations"].items():
        assert Derivation.model_validate(drv).dref == key
