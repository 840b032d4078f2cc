"""Health probes: startup once the lifespan has opened everything; ready fails (503, with
the reason) while the database or the broker does not answer, and recovers after.

The servers are real: Redis instances of our own (stopped during the test), and the
session's PostgreSQL reached through a TCP relay on loopback that the test cuts (a network
outage: the server itself is shared with other tests).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from diracx.core.settings import ServiceSettings
from diracx.db.migrate import upgrade
from diracx.routers import create_app
from diracx.routers.queue import CeleryJobQueue, RecordingJobQueue
from diracx.testing.redis import RedisServer, start_redis
from diracx.testing.utils import free_port

pytestmark = pytest.mark.timeout(120)


class TcpRelay:
    """127.0.0.1:<port> relayed to *target*; ``cut()`` drops the listener and every open
    connection (connections are refused), ``restore()`` listens again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port("127.0.0.1")
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.restore()

    def restore(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            self._listener.close()
            self._listener = None
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


def base_settings(tmp_path: Path, db_url: str, **changes: object) -> ServiceSettings:
    upgrade(db_url)
    return ServiceSettings(
        data_dir=tmp_path / "data",
        db_url=db_url,
        service_token=SecretStr("t"),
        **changes,  # type: ignore[arg-type]
    )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'diracx.db'}"


def wait_for(client: TestClient, path: str, status: int) -> dict[str, str]:
    deadline = time.monotonic() + 30
    while True:
        r = client.get(path)
        if r.status_code == status:
            body: dict[str, str] = r.json()
            return body
        assert time.monotonic() < deadline, f"{path}: {r.status_code} {r.text}, not {status}"
        time.sleep(0.1)


def test_startup_and_live(tmp_path: Path, sqlite_url: str) -> None:
    app = create_app(base_settings(tmp_path, sqlite_url), job_queue=RecordingJobQueue())
    # served without its lifespan (an ASGI server started with lifespan off): not started
    bare = TestClient(app)
    assert bare.get("/api/health/live").json() == {"status": "live"}
    r = bare.get("/api/health/startup")
    assert (r.status_code, r.json()) == (503, {"detail": "the service has not finished starting"})
    assert bare.get("/api/health/ready").status_code == 503
    with TestClient(app) as c:
        assert c.get("/api/health/startup").json() == {"status": "started"}
        assert c.get("/api/health/ready").json() == {"status": "ready"}
        assert c.get("/api/health/live").json() == {"status": "live"}
    assert bare.get("/api/health/startup").status_code == 503  # stopped


def test_the_embedded_broker_is_ready_while_its_directory_is_writable(
    tmp_path: Path, sqlite_url: str
) -> None:
    settings = base_settings(tmp_path, sqlite_url)
    with TestClient(create_app(settings)) as c:  # the real Celery producer, filesystem://
        assert c.get("/api/health/ready").json() == {"status": "ready"}
        queue_dir = settings.broker_dir / "queue"
        # a file where the queue's directory should be (a permission would not stop root)
        shutil.rmtree(queue_dir)
        queue_dir.write_text("not a directory")
        r = c.get("/api/health/ready")
        assert r.status_code == 503
        assert r.json()["detail"] == (
            f"the broker does not answer: the broker directory {settings.broker_dir}: File exists"
        )
        queue_dir.unlink()
        assert c.get("/api/health/ready").json() == {"status": "ready"}  # made again


def test_not_ready_while_redis_is_down(tmp_path: Path, sqlite_url: str) -> None:
    redis: RedisServer = start_redis()
    try:
        settings = base_settings(tmp_path, sqlite_url, broker_url=redis.url(0))
        with TestClient(create_app(settings)) as c:
            assert c.get("/api/health/ready").json() == {"status": "ready"}
            redis.stop()
            r = c.get("/api/health/ready")
            assert r.status_code == 503
            detail = r.json()["detail"]
            assert detail.startswith("the broker does not answer: OperationalError")
            assert "Connection refused" in detail
            assert c.get("/api/health/live").status_code == 200
            assert c.get("/api/health/startup").status_code == 200
    finally:
        redis.stop()


def test_not_ready_with_a_broker_on_a_closed_port(tmp_path: Path, sqlite_url: str) -> None:
    closed = free_port("127.0.0.1")
    settings = base_settings(tmp_path, sqlite_url, broker_url=f"redis://127.0.0.1:{closed}/0")
    with TestClient(create_app(settings)) as c:  # the service starts: the broker may come later
        started = time.monotonic()
        r = c.get("/api/health/ready")
        assert r.status_code == 503
        assert "the broker does not answer" in r.json()["detail"]
        assert time.monotonic() - started < 10  # bounded


async def test_the_broker_probe_is_bounded_when_redis_hangs(tmp_path: Path) -> None:
    """A Redis that accepts connections but never answers (stopped with SIGSTOP)."""
    import signal

    redis = start_redis()
    try:
        queue = CeleryJobQueue(ServiceSettings(data_dir=tmp_path, broker_url=redis.url(0)))
        await queue.ping(2.0)
        redis.process.send_signal(signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(Exception, match=r"no answer within 0\.5 s"):
            await queue.ping(0.5)
        assert time.monotonic() - started < 2
        redis.process.send_signal(signal.SIGCONT)
        queue.close()
    finally:
        redis.stop()


@pytest.fixture
def relayed_postgresql(fresh_postgresql_url: str) -> Iterator[tuple[str, TcpRelay]]:
    """A fresh PostgreSQL database, reached through a relay the test can cut."""
    url = make_url(fresh_postgresql_url)
    relay = TcpRelay((url.host or "127.0.0.1", url.port or 5432))
    try:
        yield url.set(port=relay.port).render_as_string(hide_password=False), relay
    finally:
        relay.cut()


def test_not_ready_while_postgresql_is_unreachable(
    tmp_path: Path, relayed_postgresql: tuple[str, TcpRelay]
) -> None:
    db_url, relay = relayed_postgresql
    settings = base_settings(tmp_path, db_url)
    with TestClient(create_app(settings, job_queue=RecordingJobQueue())) as c:
        assert c.get("/api/health/ready").json() == {"status": "ready"}
        relay.cut()  # its port is closed now: connections are refused
        r = c.get("/api/health/ready")
        assert r.status_code == 503
        assert r.json()["detail"].startswith("the database does not answer: ")
        assert c.get("/api/health/live").status_code == 200
        relay.restore()
        wait_for(c, "/api/health/ready", 200)
