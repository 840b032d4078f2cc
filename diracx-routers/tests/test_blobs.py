"""Blobs: missing, upload (digest checked), download."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from diracx.core.store import CHUNK_SIZE, LocalStore


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """Blobs do not touch the database: SQLite is enough."""
    return f"sqlite+aiosqlite:///{tmp_path / 'diracx.db'}"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_upload_download_round_trip(client: TestClient) -> None:
    data = b"hello diracx\n"
    digest = sha(data)
    assert client.get(f"/api/blobs/{digest}").status_code == 404

    put = client.put(
        f"/api/blobs/{digest}", content=data, headers={"Content-Type": "application/octet-stream"}
    )
    assert put.status_code == 201, put.text
    assert put.json() == {"digest": digest, "size": len(data)}

    again = client.put(f"/api/blobs/{digest}", content=data)
    assert again.status_code == 200  # already there: nothing written twice
    assert again.json() == {"digest": digest, "size": len(data)}

    got = client.get(f"/api/blobs/{digest}")
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["content-length"] == str(len(data))
    assert got.headers["content-type"] == "application/octet-stream"
    assert got.headers["etag"] == f'"{digest}"'


def test_large_blob_is_streamed_both_ways(client: TestClient, store: LocalStore) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 12345)
    digest = sha(data)

    def body():  # a streamed (chunked) upload
        for i in range(0, len(data), 64 * 1024):
            yield data[i : i + 64 * 1024]

    put = client.put(f"/api/blobs/{digest}", content=body())
    assert put.status_code == 201, put.text
    assert store.read_bytes(digest) == data
    got = client.get(f"/api/blobs/{digest}")
    assert got.headers["content-length"] == str(len(data))
    assert got.content == data


def test_empty_blob(client: TestClient) -> None:
    digest = sha(b"")
    assert client.put(f"/api/blobs/{digest}", content=b"").status_code == 201
    got = client.get(f"/api/blobs/{digest}")
    assert got.status_code == 200 and got.content == b""


def test_upload_with_wrong_digest_is_refused_and_nothing_stored(
    client: TestClient, store: LocalStore
) -> None:
    claimed = sha(b"what I say")
    r = client.put(f"/api/blobs/{claimed}", content=b"what I send")
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert "nothing stored" in detail
    assert sha(b"what I send") in detail and claimed in detail
    assert client.get(f"/api/blobs/{claimed}").status_code == 404
    assert not store.has(sha(b"what I send"))
    assert list(store.tmp.iterdir()) == []  # no temporary file left behind
    missing = client.post("/api/blobs/missing", json={"digests": [claimed]})
    assert missing.json() == {"missing": [claimed]}


def put(client: TestClient, data: bytes) -> str:
    """Upload *data* (the VO gets its claim on it); its digest."""
    r = client.put(f"/api/blobs/{sha(data)}", content=data)
    assert r.status_code in (200, 201), r.text
    return sha(data)


def test_missing_blobs_in_one_call(client: TestClient) -> None:
    have = put(client, b"present")
    lacking = [sha(f"absent {i}".encode()) for i in range(1000)]
    r = client.post("/api/blobs/missing", json={"digests": [have, *lacking, lacking[0]]})
    assert r.status_code == 200
    assert r.json() == {"missing": lacking}  # in order, without duplicates


def test_missing_blobs_refuses_malformed_digests(client: TestClient) -> None:
    r = client.post("/api/blobs/missing", json={"digests": ["0" * 64, "not-a-digest", "A" * 64]})
    assert r.status_code == 422
    body = r.json()
    assert "not a SHA-256 digest" in body["detail"]
    assert [e["loc"] for e in body["errors"]] == [["body", "digests", 1], ["body", "digests", 2]]
    assert client.post("/api/blobs/missing", json={"digests": "x"}).status_code == 422


def test_malformed_digest_in_path(client: TestClient) -> None:
    for method in ("GET", "PUT"):
        r = client.request(method, "/api/blobs/../../etc/passwd", content=b"x")
        assert r.status_code in (404, 422)
        r = client.request(method, "/api/blobs/abc", content=b"x")
        assert r.status_code == 422
        assert "not a SHA-256 digest (64 lowercase hex digits): 'abc'" in r.json()["detail"]


def test_corrupt_blob_in_the_store_is_not_served_as_valid(
    client: TestClient, store: LocalStore
) -> None:
    digest = put(client, b"original")
    path = store.path(digest)
    os.chmod(path, 0o644)
    path.write_bytes(b"tampered")
    r = client.get(f"/api/blobs/{digest}")
    assert r.status_code == 500
    assert f"blob {digest} is corrupt" in r.json()["detail"]
