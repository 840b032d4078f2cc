"""Upload plans, completion and downloads, with a local store and with S3 (moto's server).

The client follows the same code path for both: ask for plans, send the bytes
where each plan says (the service itself, or presigned URLs to the bucket, with
no credentials), complete what needs completing, then download (a redirect to a
presigned URL when the store is S3: the service never streams blob bytes then).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from diracx.core.models import MultipartUpload, SingleUpload, UploadPlans
from diracx.core.settings import ServiceSettings
from diracx.core.store import LocalStore
from diracx.db.migrate import upgrade
from diracx.db.os import S3Store

from .conftest import TOKEN

MiB = 1024 * 1024


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """Blobs do not touch the database: SQLite is enough."""
    return f"sqlite+aiosqlite:///{tmp_path / 'diracx.db'}"


@pytest.fixture(params=["local", "s3"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, db_url: str) -> ServiceSettings:
    """A fresh service on a local store, then on a fresh S3 bucket (small parts)."""
    upgrade(db_url)
    extra: dict[str, Any] = {}
    if request.param == "s3":
        env: dict[str, str] = request.getfixturevalue("s3_store_url")
        extra = {k.removeprefix("DIRACX_").lower(): v for k, v in env.items()}
    return ServiceSettings(
        data_dir=tmp_path / "data",
        db_url=db_url,
        service_token=SecretStr(TOKEN),
        broker_url=None,
        s3_multipart_threshold=6 * MiB,
        s3_multipart_part_size=5 * MiB,
        **extra,
    )


@pytest.fixture
def store(client: TestClient) -> LocalStore | S3Store:
    s: LocalStore | S3Store = client.app.state.store  # type: ignore[attr-defined]
    return s


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def plans(client: TestClient, blobs: dict[str, bytes]) -> UploadPlans:
    r = client.post(
        "/api/blobs/uploads", json=[{"digest": d, "size": len(b)} for d, b in blobs.items()]
    )
    assert r.status_code == 200, r.text
    return UploadPlans.model_validate(r.json())


def send(client: TestClient, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """PUT *body* where a plan says: a relative URL is the service (with credentials),
    an absolute one the object store (without)."""
    if url.startswith("/"):
        return client.put(url, content=body, headers=headers)
    return httpx.put(url, content=body, headers=headers)


def execute(
    client: TestClient, plan: SingleUpload | MultipartUpload, data: bytes
) -> httpx.Response:
    """Carry out one plan; the last answer (of the PUT or of the completion)."""
    if isinstance(plan, SingleUpload):
        assert plan.method == "PUT"
        r = send(client, plan.url, data, plan.headers)
        if plan.upload_id is None or r.status_code >= 300:
            return r
    else:
        for part in plan.parts:
            start = (part.number - 1) * plan.part_size
            r = send(client, part.url, data[start : start + plan.part_size], {})
            assert r.status_code == 200, r.text
    return client.post(
        f"/api/blobs/uploads/{plan.digest}/complete", json={"upload_id": plan.upload_id}
    )


def download(client: TestClient, digest: str) -> bytes:
    """GET a blob, following a redirect to the object store without the credentials."""
    r = client.get(f"/api/blobs/{digest}", follow_redirects=False)
    if r.status_code == 307:
        assert r.headers["cache-control"] == "no-store"
        r = httpx.get(r.headers["location"])  # no Authorization header
    assert r.status_code == 200, r.text
    return r.content


def upload(client: TestClient, blobs: dict[str, bytes]) -> None:
    """Upload *blobs* as a client does: plans, then each carried out."""
    for plan in plans(client, blobs).uploads:
        r = execute(client, plan, blobs[plan.digest])
        assert r.status_code in (200, 201), r.text


def test_upload_plans_then_download(client: TestClient, store: LocalStore | S3Store) -> None:
    present = sha(b"already there")
    upload(client, {present: b"already there"})
    small, big = b"a small blob", os.urandom(12 * MiB + 5)
    blobs = {sha(small): small, sha(big): big, present: b"already there"}
    got = plans(client, blobs).uploads
    assert [p.digest for p in got] == [sha(small), sha(big)]  # the present one is left out
    assert [p.size for p in got] == [len(small), len(big)]

    if isinstance(store, S3Store):
        single, multi = got
        assert isinstance(single, SingleUpload) and single.url.startswith("http://127.0.0.1")
        assert single.upload_id is not None
        assert isinstance(multi, MultipartUpload) and len(multi.parts) == 3
        assert multi.part_size == 5 * MiB
    else:  # the service's own PUT: nothing to complete
        for plan in got:
            assert isinstance(plan, SingleUpload)
            assert plan.url == f"/api/blobs/{plan.digest}" and plan.upload_id is None

    for plan in got:
        r = execute(client, plan, blobs[plan.digest])
        assert r.status_code == 201, r.text
        assert r.json() == {"digest": plan.digest, "size": plan.size}
    assert plans(client, blobs).uploads == []
    assert client.post("/api/blobs/missing", json={"digests": list(blobs)}).json() == {
        "missing": []
    }
    for digest, data in blobs.items():
        assert download(client, digest) == data


def test_downloads_from_s3_are_redirected(client: TestClient, store: LocalStore | S3Store) -> None:
    digest = sha(b"redirect me")
    upload(client, {digest: b"redirect me"})
    r = client.get(f"/api/blobs/{digest}", follow_redirects=False)
    if isinstance(store, S3Store):
        assert r.status_code == 307
        assert r.headers["location"].startswith(store.client.meta.endpoint_url)
        assert r.content == b""  # no bytes through the service
    else:
        assert r.status_code == 200 and r.content == b"redirect me"
    absent = sha(b"absent")
    r = client.get(f"/api/blobs/{absent}", follow_redirects=False)
    assert r.status_code == 404  # not a redirect to a missing object
    assert f"blob {absent} is not in the store" in r.json()["detail"]


@pytest.mark.parametrize("size", [10, 11 * MiB])
def test_a_tampered_upload_is_refused_and_nothing_is_stored(
    client: TestClient, store: LocalStore | S3Store, size: int
) -> None:
    data = os.urandom(size)
    tampered = bytes([data[0] ^ 1]) + data[1:]
    digest = sha(data)
    (plan,) = plans(client, {digest: data}).uploads
    r = execute(client, plan, tampered)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert "nothing stored" in detail and digest in detail and sha(tampered) in detail
    assert client.get(f"/api/blobs/{digest}", follow_redirects=False).status_code == 404
    assert not store.has(digest) and not store.has(sha(tampered))
    if isinstance(store, S3Store):  # neither staged objects nor pending uploads remain
        assert store.client.list_objects_v2(Bucket=store.bucket).get("KeyCount") == 0
        assert store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", []) == []
    assert [p.digest for p in plans(client, {digest: data}).uploads] == [digest]


def test_completing_twice_or_an_unknown_upload(
    client: TestClient, store: LocalStore | S3Store
) -> None:
    data = b"complete me"
    digest = sha(data)
    (plan,) = plans(client, {digest: data}).uploads
    assert execute(client, plan, data).status_code == 201
    complete = f"/api/blobs/uploads/{digest}/complete"
    if isinstance(store, S3Store):
        again = client.post(complete, json={"upload_id": plan.upload_id})
        assert again.status_code == 200  # a retry finds the blob in place
        other = sha(b"never uploaded")
        r = client.post(f"/api/blobs/uploads/{other}/complete", json={"upload_id": "s." + "0" * 32})
        assert r.status_code == 404
        assert "is pending" in r.json()["detail"]
        r = client.post(complete, json={"upload_id": "../../etc/passwd"})
        assert r.status_code == 400
        assert "malformed upload id" in r.json()["detail"]
    else:
        r = client.post(complete, json={"upload_id": "anything"})
        assert r.status_code == 400
        assert "local directory" in r.json()["detail"]
    assert client.post(complete, json={}).status_code == 422
    assert client.post(complete, json={"upload_id": ""}).status_code == 422


def test_malformed_upload_requests_get_clear_messages(client: TestClient) -> None:
    def problems(body: Any) -> tuple[str, list[Any]]:
        r = client.post("/api/blobs/uploads", json=body)
        assert r.status_code == 422, r.text
        return r.json()["detail"], [e["loc"] for e in r.json()["errors"]]

    good = sha(b"x")
    detail, locs = problems([{"digest": "abc", "size": 1}, {"digest": good, "size": -1}])
    assert "not a SHA-256 digest (64 lowercase hex digits): 'abc'" in detail
    assert locs == [["body", 0, "digest"], ["body", 1, "size"]]
    detail, _ = problems([{"digest": good, "size": 6 * 1024**4}])
    assert "less than or equal to" in detail
    detail, locs = problems([{"digest": good, "size": 1}, {"digest": good, "size": 2}])
    assert "listed twice with different sizes (1, 2)" in detail and locs == [["body", 1, "size"]]
    problems({"digest": good, "size": 1})  # not a list
    problems([{"digest": good}])  # no size
    assert client.post("/api/blobs/uploads", json=[]).json() == {"uploads": []}
    r = client.post(f"/api/blobs/uploads/{'A' * 64}/complete", json={"upload_id": "x"})
    assert r.status_code == 422


def test_the_service_takes_no_blob_bytes_with_an_s3_store(
    client: TestClient, store: LocalStore | S3Store
) -> None:
    data = b"sent to the service itself"
    r = client.put(f"/api/blobs/{sha(data)}", content=data)
    if isinstance(store, S3Store):
        assert r.status_code == 400
        assert "POST /api/blobs/uploads" in r.json()["detail"]
        assert not store.has(sha(data))
    else:
        assert r.status_code == 201


def test_upload_routes_need_a_token(anonymous: TestClient) -> None:
    digest = sha(b"x")
    assert anonymous.post("/api/blobs/uploads", json=[]).status_code == 401
    r = anonymous.post(f"/api/blobs/uploads/{digest}/complete", json={"upload_id": "s.x"})
    assert r.status_code == 401


def test_a_blob_the_store_holds_for_another_vo_must_be_sent_and_checked(
    client: TestClient, store: LocalStore | S3Store
) -> None:
    """Bytes in the store that the caller's VO never sent (another VO's) are missing for
    it, cannot be downloaded, and are claimed only by sending bytes that hash to them."""
    data = os.urandom(1000)
    digest = store.put_bytes(data)  # stored, but no claim of the caller's VO
    absent = sha(b"nobody stored this")
    assert client.post("/api/blobs/missing", json={"digests": [digest]}).json() == {
        "missing": [digest]
    }
    for d in (digest, absent):  # the same answer: a digest proves nothing
        r = client.get(f"/api/blobs/{d}", follow_redirects=False)
        assert r.status_code == 404
        assert r.json() == {"detail": f"blob {d} is not in the store"}

    (plan,) = plans(client, {digest: data}).uploads  # to be sent, although stored
    tampered = bytes([data[0] ^ 1]) + data[1:]
    assert execute(client, plan, tampered).status_code == 400
    if isinstance(store, S3Store):  # finishing an upload that was never made gives nothing
        for upload_id in ("s." + "0" * 32, plan.upload_id):
            r = client.post(f"/api/blobs/uploads/{digest}/complete", json={"upload_id": upload_id})
            assert r.status_code == 404, r.text
            assert "is pending" in r.json()["detail"]
    else:
        assert client.put(f"/api/blobs/{digest}", content=b"").status_code == 400
    assert client.get(f"/api/blobs/{digest}", follow_redirects=False).status_code == 404

    (plan,) = plans(client, {digest: data}).uploads
    r = execute(client, plan, data)
    assert r.status_code == 201, r.text  # new for the VO (not "already there")
    assert r.json() == {"digest": digest, "size": len(data)}
    assert plans(client, {digest: data}).uploads == []
    assert download(client, digest) == data
    if isinstance(store, LocalStore):
        assert client.put(f"/api/blobs/{digest}", content=data).status_code == 200
