"""The hand-written layer of diracx-client against a real, running DiracX service.

Each service is the real app (``create_app``, lifespan and all) served by uvicorn on a
loopback port, on a migrated SQLite database, with a known service token. No worker
runs: a ``RecordingJobQueue`` keeps the ids of the jobs the service queues.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from pydantic import SecretStr
from starlette.types import ASGIApp, Receive, Scope, Send

from diracx.client import AsyncDiracxClient, DiracxHTTPError
from diracx.core.derivation import Derivation, DrvInput, PipelineSubmission, TreeInput
from diracx.core.exceptions import CorruptObjectError, DiracxError
from diracx.core.models import PipelineInfo
from diracx.core.settings import ServiceSettings
from diracx.core.store import CHUNK_SIZE, LocalStore
from diracx.core.tree import ingest_directory
from diracx.core.version import __version__
from diracx.db.migrate import upgrade
from diracx.routers import create_app
from diracx.routers.queue import RecordingJobQueue
from diracx.testing.utils import give_blobs_to_vo

TOKEN = "client-test-token"
START_TIMEOUT = 30.0


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Service:
    """A running service and what it saw."""

    url: str
    settings: ServiceSettings
    store: LocalStore
    queue: RecordingJobQueue
    requests: list[Request] = field(default_factory=list)

    def requests_to(self, method: str, path: str) -> list[Request]:
        return [r for r in self.requests if r.method == method and r.path == path]


class RecordRequests:
    """ASGI wrapper that records every HTTP request's method, path and headers."""

    def __init__(self, app: ASGIApp, requests: list[Request]) -> None:
        self.app = app
        self.requests = requests

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            self.requests.append(Request(scope["method"], scope["path"], headers))
        await self.app(scope, receive, send)


def loopback_socket() -> socket.socket:
    """A listening-ready socket on a free loopback port (no race: uvicorn gets the socket)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Serve *app* with uvicorn in a thread on a free loopback port; yield its URL."""
    sock = loopback_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the test service failed to start (see the log above)")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the test service did not start in {START_TIMEOUT} s")
            time.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the test service did not stop"


@contextmanager
def run_service(root: Path, *, min_client_version: str = "0.0.0") -> Iterator[Service]:
    """The real DiracX app on a migrated SQLite database in *root*."""
    root.mkdir(parents=True, exist_ok=True)
    db_url = f"sqlite+aiosqlite:///{root / 'diracx.db'}"
    upgrade(db_url)
    settings = ServiceSettings(
        data_dir=root / "data",
        db_url=db_url,
        service_token=SecretStr(TOKEN),
        broker_url=None,
        min_client_version=min_client_version,
    )
    queue = RecordingJobQueue()
    requests: list[Request] = []
    app = RecordRequests(create_app(settings, job_queue=queue), requests)
    with serve(app) as url:
        yield Service(
            url=url,
            settings=settings,
            store=LocalStore(settings.resolved_store_path()),
            queue=queue,
            requests=requests,
        )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service for the module; tests use fresh random blobs, so they do not interfere."""
    with run_service(tmp_path_factory.mktemp("service")) as svc:
        yield svc


@pytest.fixture
async def client(service: Service) -> AsyncIterator[AsyncDiracxClient]:
    c = AsyncDiracxClient(service.url, TOKEN)
    try:
        yield c
    finally:
        await c.aclose()


def random_blob(size: int = 64) -> tuple[str, bytes]:
    data = os.urandom(size)
    return hashlib.sha256(data).hexdigest(), data


def store_is_clean(store: LocalStore) -> bool:
    """No temporary file left behind by a refused upload."""
    return not any(store.tmp.iterdir())


# -- token and version header ----------------------------------------------------------------


async def test_every_request_carries_the_token_and_the_client_version(
    service: Service, client: AsyncDiracxClient, tmp_path: Path
) -> None:
    digest, data = random_blob()
    assert await client.missing_blobs([digest]) == [digest]
    await client.upload_blob(digest, data)  # raw httpx, not the generated functions
    await client.download_blob(digest, LocalStore(tmp_path / "cache"))

    seen = [
        *service.requests_to("POST", "/api/blobs/missing"),
        *service.requests_to("PUT", f"/api/blobs/{digest}"),
        *service.requests_to("GET", f"/api/blobs/{digest}"),
    ]
    assert len(seen) == 3
    for request in seen:
        assert request.headers["authorization"] == f"Bearer {TOKEN}", request
        assert request.headers["diracx-client-version"] == __version__, request


async def test_a_client_older_than_the_minimum_is_told_what_to_upgrade_to(
    tmp_path: Path,
) -> None:
    with run_service(tmp_path / "svc", min_client_version="999.1") as svc:
        client = AsyncDiracxClient(svc.url, TOKEN)
        try:
            with pytest.raises(DiracxHTTPError) as exc_info:
                await client.get_pipeline(1)
            assert exc_info.value.status == 400
            message = str(exc_info.value)
            assert "999.1" in message and "upgrade" in message, message
            assert __version__ in message, message

            digest, data = random_blob()
            with pytest.raises(DiracxHTTPError, match=r"999\.1") as upload_info:
                await client.upload_blob(digest, data)
            assert upload_info.value.status == 400
            assert not svc.store.has(digest)

            # discovery is exempt: an old client can still learn what the server wants
            metadata = await client.metadata()
            assert metadata.min_client_version == "999.1"
        finally:
            await client.aclose()


@pytest.mark.parametrize(
    ("token", "expected"),
    [("not-the-token", "invalid bearer token"), (None, "authentication required")],
)
async def test_a_bad_token_gives_a_readable_401(
    service: Service, token: str | None, expected: str
) -> None:
    client = AsyncDiracxClient(service.url, token)
    try:
        with pytest.raises(DiracxHTTPError) as exc_info:
            await client.get_job(1)
        assert exc_info.value.status == 401
        assert expected in str(exc_info.value)
        assert "{" not in str(exc_info.value)  # the message, not the JSON document

        digest, data = random_blob()
        with pytest.raises(DiracxHTTPError) as upload_info:
            await client.upload_blob(digest, data)
        assert upload_info.value.status == 401
        assert not service.store.has(digest)
    finally:
        await client.aclose()


# -- blobs ---------------------------------------------------------------------------------


async def test_missing_blobs_names_only_those_the_store_lacks(
    service: Service, client: AsyncDiracxClient
) -> None:
    (have, have_data), (lack, _), (other, other_data) = random_blob(), random_blob(), random_blob()
    await client.upload_blob(have, have_data)
    service.store.put_bytes(other_data)  # in the store, but not the caller's VO's: missing
    assert await client.missing_blobs([have, lack, lack, other]) == [lack, other]
    assert await client.missing_blobs([]) == []


async def test_a_malformed_digest_is_a_422_with_the_reason(client: AsyncDiracxClient) -> None:
    with pytest.raises(DiracxHTTPError, match="not a SHA-256 digest") as exc_info:
        await client.missing_blobs(["abc"])
    assert exc_info.value.status == 422


async def test_upload_bytes_then_download_into_a_local_store(
    service: Service, client: AsyncDiracxClient, tmp_path: Path
) -> None:
    digest, data = random_blob(1000)
    await client.upload_blob(digest, data)
    assert service.store.read_bytes(digest) == data
    await client.upload_blob(digest, data)  # again: the service already has it, no error

    cache = LocalStore(tmp_path / "cache")
    await client.download_blob(digest, cache)
    assert cache.read_bytes(digest) == data
    assert store_is_clean(cache)


async def test_upload_a_large_file_streamed_from_a_path(
    service: Service, client: AsyncDiracxClient, tmp_path: Path
) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 12345)
    digest = hashlib.sha256(data).hexdigest()
    path = tmp_path / "big.bin"
    path.write_bytes(data)

    await client.upload_blob(digest, path)
    assert service.store.read_bytes(digest) == data
    (put,) = service.requests_to("PUT", f"/api/blobs/{digest}")
    # streamed: sent in chunks as the file is read, not read whole to learn its length
    assert put.headers.get("transfer-encoding") == "chunked", put.headers
    assert "content-length" not in put.headers

    cache = LocalStore(tmp_path / "cache")
    await client.download_blob(digest, cache)  # the service streams it back
    assert cache.read_bytes(digest) == data


async def test_an_upload_that_does_not_match_its_digest_is_refused(
    service: Service, client: AsyncDiracxClient, tmp_path: Path
) -> None:
    digest, _ = random_blob()
    _, other = random_blob()
    with pytest.raises(DiracxHTTPError) as exc_info:
        await client.upload_blob(digest, other)
    assert exc_info.value.status == 400
    assert "nothing stored" in str(exc_info.value)
    assert digest in str(exc_info.value)
    assert not service.store.has(digest)
    assert not service.store.has(hashlib.sha256(other).hexdigest())
    assert store_is_clean(service.store)

    path = tmp_path / "changed.txt"
    path.write_bytes(other)
    with pytest.raises(DiracxHTTPError, match="did the file change") as path_info:
        await client.upload_blob(digest, path)
    assert path_info.value.status == 400
    assert str(path) in str(path_info.value)
    assert not service.store.has(digest)
    assert store_is_clean(service.store)


async def test_download_of_an_unknown_blob_is_a_404_and_stores_nothing(
    client: AsyncDiracxClient, tmp_path: Path
) -> None:
    digest, _ = random_blob()
    cache = LocalStore(tmp_path / "cache")
    with pytest.raises(DiracxHTTPError, match=f"blob {digest} is not in the store") as exc_info:
        await client.download_blob(digest, cache)
    assert exc_info.value.status == 404
    assert not cache.has(digest)
    assert store_is_clean(cache)


def damage(service: Service, size: int) -> str:
    """A blob of *size* bytes (the local VO's) whose stored copy no longer hashes to its
    digest."""
    data = os.urandom(size)
    digest = service.store.put_bytes(data)
    give_blobs_to_vo(service.settings.resolved_db_url(), {digest: size})
    blob = service.store.path(digest)
    blob.chmod(0o644)
    blob.write_bytes(bytes([data[0] ^ 1]) + data[1:])  # same size, other bytes
    return digest


async def test_a_damaged_blob_on_the_service_never_reaches_the_local_store(
    service: Service, client: AsyncDiracxClient, tmp_path: Path
) -> None:
    cache = LocalStore(tmp_path / "cache")
    # small: the service reads it whole, notices, and answers an error
    small = damage(service, 100)
    with pytest.raises(DiracxHTTPError, match=f"blob {small} is corrupt") as exc_info:
        await client.download_blob(small, cache)
    assert exc_info.value.status == 500
    # large: the service has sent the headers when it notices, and can only cut the
    # connection (before or after the last byte): the client's own check catches the rest
    large = damage(service, CHUNK_SIZE + 100)
    with pytest.raises(DiracxError, match=f"{large}|connection"):
        await client.download_blob(large, cache)
    assert not cache.has(small) and not cache.has(large)
    assert store_is_clean(cache)


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


def fake_server(answer: Callable[[str], Answer]) -> ASGIApp:
    """A bare ASGI server (not DiracX) that answers each request path with *answer*."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        status, headers, body = answer(scope["path"])
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for i in range(0, len(body), 65536):  # in pieces, as a real server streams
            chunk = body[i : i + 65536]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


def tampering_service(data: bytes) -> ASGIApp:
    """Answers every request, blob downloads included, with *data*, whatever the digest."""
    return fake_server(lambda path: (200, [(b"content-type", b"application/octet-stream")], data))


@pytest.mark.parametrize("size", [10, 3 * CHUNK_SIZE + 7])
async def test_a_download_that_does_not_match_its_digest_is_not_kept(
    tmp_path: Path, size: int
) -> None:
    """The client verifies what it receives, as it streams it into the store."""
    expected, data = random_blob(size)
    wrong = bytes([data[0] ^ 1]) + data[1:]
    cache = LocalStore(tmp_path / "cache")
    with serve(tampering_service(wrong)) as url:
        client = AsyncDiracxClient(url, TOKEN)
        try:
            with pytest.raises(CorruptObjectError) as exc_info:
                await client.download_blob(expected, cache)
        finally:
            await client.aclose()
    message = str(exc_info.value)
    assert f"download of blob {expected} was corrupt" in message
    assert hashlib.sha256(wrong).hexdigest() in message
    assert not cache.has(expected)
    assert not cache.has(hashlib.sha256(wrong).hexdigest())
    assert store_is_clean(cache)


# -- pipelines and jobs ---------------------------------------------------------------------


def small_pipeline(tree: str, *, salt: str) -> tuple[PipelineSubmission, Derivation, Derivation]:
    """``compile`` reads a source tree; ``package`` uses compile's output."""
    compile_ = Derivation(
        name="compile",
        builder={"executor": "process", "argv": ["cp", "-r", "inputs/src", "out/"]},
        config={"salt": salt, "level": 2, "flags": ["-O2"]},
        inputs={"src": TreeInput(tree=tree)},
    )
    package = Derivation(
        name="package",
        builder={"executor": "process", "argv": ["true"], "env": {"MODE": "fast"}},
        inputs={"compiled": DrvInput(drv=compile_.dref)},
    )
    submission = PipelineSubmission(
        derivations={compile_.dref: compile_, package.dref: package}, targets=[package.dref]
    )
    return submission, compile_, package


async def upload_tree(client: AsyncDiracxClient, directory: Path, tmp_path: Path) -> str:
    """Ingest *directory* locally, send the blobs the service lacks; return the tree digest."""
    local = LocalStore(tmp_path / "local")
    tree = ingest_directory(local, directory)
    wanted = sorted({*tree.blob_digests(), tree.digest})
    for digest in await client.missing_blobs(wanted):
        await client.upload_blob(digest, local.path(digest))
    assert await client.missing_blobs(wanted) == []
    return tree.digest


async def test_submit_a_pipeline_then_follow_it(
    service: Service, client: AsyncDiracxClient, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "main.c").write_text("int main(void) { return 0; }\n")
    (src / "salt").write_bytes(os.urandom(16))
    tree = await upload_tree(client, src, tmp_path)
    submission, compile_, package = small_pipeline(tree, salt=os.urandom(4).hex())

    pipeline = await client.submit_pipeline(submission)
    assert isinstance(pipeline, PipelineInfo)
    assert pipeline.status == "Running"
    assert pipeline.owner == "local"
    assert pipeline.targets == [package.dref]
    stages = {s.name: s for s in pipeline.stages}
    assert set(stages) == {"compile", "package"}
    assert stages["compile"].dref == compile_.dref and stages["package"].dref == package.dref
    assert not any(s.cached for s in stages.values())
    assert stages["compile"].status == "Waiting"
    assert stages["package"].status == "Checking"
    compile_job = stages["compile"].job_id
    assert compile_job is not None and compile_job in service.queue.job_ids
    assert stages["package"].job_id not in service.queue.job_ids

    again = await client.get_pipeline(pipeline.id)
    assert again.id == pipeline.id
    assert {s.dref: s.job_id for s in again.stages} == {s.dref: s.job_id for s in pipeline.stages}

    job = await client.get_job(compile_job)
    assert job.id == compile_job and job.pipeline_id == pipeline.id
    assert job.dref == compile_.dref and job.name == "compile"
    assert job.status == "Waiting"
    assert [h.status for h in job.history][-1] == "Waiting"

    events = await client.pipeline_events(pipeline.id, after=0, wait=0)
    assert not events.finished
    assert events.events, "submission records the jobs' first statuses"
    assert {e.job_id for e in events.events} <= {s.job_id for s in pipeline.stages}
    # a long poll with nothing new answers after about *wait* seconds, with no event
    started = time.monotonic()
    later = await client.pipeline_events(pipeline.id, after=events.last_event_id, wait=0.3)
    assert later.events == [] and not later.finished
    assert 0.25 <= time.monotonic() - started < 10

    # the same pipeline again: the same derivations, nothing rebuilt or queued twice
    before = list(service.queue.job_ids)
    second = await client.submit_pipeline(submission)
    assert second.id != pipeline.id
    assert {s.dref for s in second.stages} == {compile_.dref, package.dref}
    assert service.queue.job_ids[: len(before)] == before


async def test_an_invalid_pipeline_is_refused_with_the_reason(
    service: Service, client: AsyncDiracxClient
) -> None:
    missing_tree, _ = random_blob()
    submission, compile_, _ = small_pipeline(missing_tree, salt="x")
    with pytest.raises(DiracxHTTPError, match="upload it first") as exc_info:
        await client.submit_pipeline(submission)
    assert exc_info.value.status == 400
    assert "compile" in str(exc_info.value)

    wrong_key = "0" * 64
    forged = PipelineSubmission(derivations={wrong_key: compile_}, targets=[wrong_key])
    with pytest.raises(DiracxHTTPError, match="hash mismatch") as forged_info:
        await client.submit_pipeline(forged)
    assert forged_info.value.status == 400


async def test_unknown_objects_are_404s_with_the_service_message(
    client: AsyncDiracxClient,
) -> None:
    with pytest.raises(DiracxHTTPError) as exc_info:
        await client.get_job(987654)
    assert exc_info.value.status == 404
    assert str(exc_info.value) == "job 987654 does not exist"
    assert exc_info.value.detail == "job 987654 does not exist"

    with pytest.raises(DiracxHTTPError, match="pipeline 987654 does not exist") as p_info:
        await client.get_pipeline(987654)
    assert p_info.value.status == 404
    with pytest.raises(DiracxHTTPError, match="pipeline 987654 does not exist") as e_info:
        await client.pipeline_events(987654, after=0, wait=0)
    assert e_info.value.status == 404

    rref, _ = random_blob()
    with pytest.raises(DiracxHTTPError) as r_info:
        await client.get_realization(rref)
    assert r_info.value.status == 404
    assert rref in str(r_info.value)


async def test_metadata(service: Service, client: AsyncDiracxClient) -> None:
    metadata = await client.metadata()
    assert metadata.min_client_version == "0.0.0"
    assert {"process", "python"} <= set(metadata.executors)


# -- not a DiracX service --------------------------------------------------------------------


def closed_port() -> int:
    sock = loopback_socket()
    port: int = sock.getsockname()[1]
    sock.close()  # bound, never listening, now closed: connections are refused
    return port


async def test_an_unreachable_service_is_a_diracx_error(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    client = AsyncDiracxClient(url, TOKEN)
    digest, data = random_blob()
    calls = {
        "get_job": lambda: client.get_job(1),
        "submit_pipeline": lambda: client.submit_pipeline(small_pipeline(digest, salt="x")[0]),
        "missing_blobs": lambda: client.missing_blobs([digest]),
        "upload_blob": lambda: client.upload_blob(digest, data),
        "download_blob": lambda: client.download_blob(digest, LocalStore(tmp_path / "cache")),
    }
    try:
        for name, call in calls.items():
            with pytest.raises(DiracxError) as exc_info:
                await call()
            error = exc_info.value
            assert not isinstance(error, DiracxHTTPError), name
            assert f"cannot reach the DiracX service at {url}" in str(error), (name, str(error))
    finally:
        await client.aclose()


REDIRECT = r"redirects /api/blobs/\S+ to https://diracx\.example\.org/api/blobs/"


def web_page(path: str) -> Answer:
    """What a misconfigured URL may point at: a web server that answers HTML."""
    headers = [(b"content-type", b"text/html")]
    if path.startswith("/api/jobs/"):
        return 404, headers, b"<html><body>Not here</body></html>"
    if path.startswith("/api/blobs/"):
        headers.append((b"location", b"https://diracx.example.org" + path.encode()))
        return 308, headers, b""
    return 200, headers, b"<html><body>Sign in</body></html>"


async def test_a_server_that_is_not_diracx_gives_a_diracx_error() -> None:
    with serve(fake_server(web_page)) as url:
        client = AsyncDiracxClient(url, TOKEN)
        try:
            with pytest.raises(DiracxHTTPError) as exc_info:
                await client.get_job(1)  # an HTML 404
            assert exc_info.value.status == 404
            assert "Not here" in str(exc_info.value)

            with pytest.raises(DiracxError) as ok_info:
                await client.get_pipeline(1)  # an HTML 200
            assert not isinstance(ok_info.value, httpx.HTTPError | ValueError)
            assert url in str(ok_info.value)
            assert "is it a DiracX service" in str(ok_info.value)

            digest, data = random_blob()
            for call in (
                lambda: client.missing_blobs([digest]),
                lambda: client.upload_blob(digest, data),
            ):
                with pytest.raises(DiracxHTTPError, match=REDIRECT) as r:
                    await call()
                assert r.value.status == 308
        finally:
            await client.aclose()


def test_nothing_listens_after_a_service_stops(tmp_path: Path) -> None:
    """The fixture's servers really stop (no thread or port left behind)."""
    with run_service(tmp_path / "svc") as svc:
        url = svc.url
        assert httpx.get(f"{url}/api/health/live").status_code == 200
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/api/health/live")
