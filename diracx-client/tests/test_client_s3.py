"""The client's blob transfers against a real service whose store is S3 (moto's server).

Uploads follow the service's plans straight to the bucket (presigned URLs, a
large blob in parallel parts), downloads follow the redirect; neither carries
the service's credentials to the object store, and both check the digest.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from diracx.client import AsyncDiracxClient, DiracxHTTPError
from diracx.core.exceptions import CorruptObjectError, DiracxError
from diracx.core.settings import ServiceSettings
from diracx.core.store import LocalStore
from diracx.db.migrate import upgrade
from diracx.db.os import S3Store, open_store
from diracx.routers import create_app
from diracx.routers.queue import RecordingJobQueue
from diracx.testing.utils import give_blobs_to_vo

from .test_client import TOKEN, RecordRequests, Request, closed_port, serve

MiB = 1024 * 1024


@dataclass
class S3Service:
    url: str
    store: S3Store
    requests: list[Request]
    db_url: str

    def put_bytes(self, data: bytes) -> str:
        """Store *data* directly (not through the API) as a blob of the local VO."""
        digest = self.store.put_bytes(data)
        give_blobs_to_vo(self.db_url, {digest: len(data)})
        return digest

    def paths(self, method: str) -> list[str]:
        return [r.path for r in self.requests if r.method == method]


@contextmanager
def run_s3_service(tmp_path: Path, s3_env: dict[str, str], **extra: Any) -> Iterator[S3Service]:
    """The real app on a fresh SQLite database and the S3 bucket of *s3_env*."""
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'diracx.db'}"
    upgrade(db_url)
    fields: dict[str, Any] = {k.removeprefix("DIRACX_").lower(): v for k, v in s3_env.items()}
    settings = ServiceSettings(
        data_dir=tmp_path / "data",
        db_url=db_url,
        service_token=SecretStr(TOKEN),
        s3_multipart_threshold=6 * MiB,
        s3_multipart_part_size=5 * MiB,
        **{**fields, **extra},
    )
    requests: list[Request] = []
    app = RecordRequests(create_app(settings, job_queue=RecordingJobQueue()), requests)
    store = open_store(settings)
    assert isinstance(store, S3Store)
    with serve(app) as url:
        yield S3Service(url, store, requests, db_url)


@pytest.fixture
def service(tmp_path: Path, s3_store_url: dict[str, str]) -> Iterator[S3Service]:
    with run_s3_service(tmp_path, s3_store_url) as svc:
        yield svc


@pytest.fixture
async def client(service: S3Service) -> AsyncIterator[AsyncDiracxClient]:
    c = AsyncDiracxClient(service.url, TOKEN)
    try:
        yield c
    finally:
        await c.aclose()


def store_requests(client: AsyncDiracxClient) -> list[httpx.Request]:
    """Every request the client sends to the object store (observed, not altered)."""
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request)

    client._transfer.event_hooks["request"].append(record)
    return seen


@pytest.mark.parametrize("size", [100, 12 * MiB + 1])
@pytest.mark.parametrize("kind", ["bytes", "path"])
async def test_upload_and_download_through_the_object_store(
    service: S3Service, client: AsyncDiracxClient, tmp_path: Path, size: int, kind: str
) -> None:
    data = os.urandom(size)
    digest = hashlib.sha256(data).hexdigest()
    path = tmp_path / "blob"
    path.write_bytes(data)
    to_store = store_requests(client)

    await client.upload_blob(digest, data if kind == "bytes" else path)
    assert service.store.read_bytes(digest) == data
    cache = LocalStore(tmp_path / "cache")
    await client.download_blob(digest, cache)
    assert cache.read_bytes(digest) == data

    # the service handed out URLs and never took or gave the bytes itself
    assert service.paths("PUT") == []
    assert service.paths("POST") == [
        "/api/blobs/uploads",
        f"/api/blobs/uploads/{digest}/complete",
    ]
    methods = [r.method for r in to_store]
    assert methods == ["PUT"] * (1 if size < 6 * MiB else 3) + ["GET"]
    for request in to_store:
        assert "authorization" not in request.headers
        assert request.url.host == "127.0.0.1" and request.url.path.startswith("/diracx-test-")
    # the plan is empty once the store has the blob: nothing is sent again
    assert await client.plan_uploads([(digest, size)]) == []


async def test_a_changed_file_is_refused_and_named(
    service: S3Service, client: AsyncDiracxClient, tmp_path: Path
) -> None:
    digest = hashlib.sha256(b"what was hashed").hexdigest()
    path = tmp_path / "changed.txt"
    path.write_bytes(b"what is sent now")
    with pytest.raises(DiracxHTTPError, match="did the file change") as exc_info:
        await client.upload_blob(digest, path)
    assert exc_info.value.status == 400
    assert "nothing stored" in str(exc_info.value) and str(path) in str(exc_info.value)
    assert not service.store.has(digest)


async def test_a_corrupt_object_is_caught_by_the_client(
    service: S3Service, client: AsyncDiracxClient, tmp_path: Path
) -> None:
    for size in (100, 3 * MiB):
        data = os.urandom(size)
        digest = service.put_bytes(data)
        service.store.client.put_object(
            Bucket=service.store.bucket, Key=service.store.key(digest), Body=data[::-1]
        )
        cache = LocalStore(tmp_path / "cache")
        with pytest.raises(CorruptObjectError, match=f"download of blob {digest} was corrupt"):
            await client.download_blob(digest, cache)
        assert not cache.has(digest) and list(cache.tmp.iterdir()) == []


async def test_an_unknown_blob_is_a_404(client: AsyncDiracxClient, tmp_path: Path) -> None:
    digest = hashlib.sha256(b"nowhere").hexdigest()
    with pytest.raises(DiracxHTTPError, match=f"blob {digest} is not in the store") as exc_info:
        await client.download_blob(digest, LocalStore(tmp_path / "cache"))
    assert exc_info.value.status == 404


async def test_an_unreachable_object_store_is_a_clear_error(
    tmp_path: Path, s3_store_url: dict[str, str]
) -> None:
    """The service hands out URLs of a host nobody listens on: the client says so."""
    dead = f"http://127.0.0.1:{closed_port()}"
    with run_s3_service(tmp_path, s3_store_url, s3_public_endpoint_url=dead) as service:
        client = AsyncDiracxClient(service.url, TOKEN)
        try:
            digest = service.put_bytes(b"somewhere")
            where = f"from the object store at {dead}"
            with pytest.raises(DiracxError, match=f"cannot download blob {digest} {where}"):
                await client.download_blob(digest, LocalStore(tmp_path / "cache"))
            data = b"to nowhere"
            with pytest.raises(DiracxError, match=f"to the object store at {dead}") as exc_info:
                await client.upload_blob(hashlib.sha256(data).hexdigest(), data)
            assert "X-Amz-Signature" not in str(exc_info.value)  # never the presigned query
        finally:
            await client.aclose()
