"""The embedded engine: the service and a worker on loopback, for one user's machine.

``python -m diracx.routers serve --embedded`` (started on the fly by
``diracx.api.connect()``) holds a lock on the data directory, migrates the
database, recovers from a crash (jobs held by dead workers are rescheduled,
Waiting jobs are queued again), mints a token for the local user, listens on
a free loopback port, starts a worker process (``python -m diracx.tasks``) and
writes ``engine.json`` so that later sessions reuse it. It runs the periodic
tasks itself (``diracx.db.periodic``: no Celery beat), restarts a worker that
died, and stops itself after ``engine_idle_timeout`` seconds without requests
or live jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import SecretStr

from diracx.core.secrets import new_key
from diracx.core.settings import ServiceSettings
from diracx.core.version import __version__
from diracx.db.data_upgrades import upgrade_data
from diracx.db.migrate import current_revision, sqlite_is_current, upgrade
from diracx.db.os import open_store
from diracx.db.periodic import Send, run_tick
from diracx.db.pipelines import PipelineDB

log = logging.getLogger(__name__)

ENGINE_FILE = "engine.json"
SECRET_KEY_FILE = "secret.key"
LOCK_FILE = "engine.lock"
WATCH_SECONDS = 1.0
PR_SET_PDEATHSIG = 1
WORKER_STOP_GRACE = 5.0  # seconds a worker has to stop before it is killed
ENGINE_LOCKED = 3  # exit code when another engine holds the data directory (the launcher retries)


class EngineAlreadyRunning(RuntimeError):
    pass


def _die_with_parent() -> None:
    """In the worker child: get SIGKILL when the engine dies, even by kill -9."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _ignore_signal(signum: int, frame: object) -> None:
    """The handler uvicorn restores once it has shut down (see EmbeddedEngine.serve)."""


def _lock(data_dir: Path) -> int:
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise EngineAlreadyRunning(f"another DiracX engine is running on {data_dir}") from None
    return fd


def secret_key_of(data_dir: Path) -> str:
    """The key that seals job secrets, kept in ``<data_dir>/secret.key`` (0600) across
    restarts (a restarted engine still opens what waiting jobs carry); made once."""
    path = data_dir / SECRET_KEY_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    key = new_key()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key)
    return key


def write_private_json(path: Path, doc: dict[str, Any]) -> None:
    """Write a file only the user can read, atomically (readers never see half of it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


class IdleTracker:
    """ASGI middleware that remembers when the last request came."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app
        self.last_request = time.monotonic()

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.last_request = time.monotonic()
        await self.app(scope, receive, send)
        if scope["type"] == "http":
            self.last_request = time.monotonic()


class EmbeddedEngine:
    def __init__(self, settings: ServiceSettings, port: int = 0) -> None:
        self.settings = settings
        self.port = port
        self.data_dir = settings.data_dir
        self.worker: subprocess.Popen[bytes] | None = None

    def prepare(self) -> None:
        """Lock the data directory, migrate and clean up what a crash left behind."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock_fd = _lock(self.data_dir)
        url = self.settings.resolved_db_url()
        if not sqlite_is_current(url):  # the usual start: nothing to migrate, fast
            before = current_revision(url)
            upgrade(url)
            upgrade_data(self.settings, before)
        # Nothing else uses these while we hold the lock: whatever is there is debris.
        # (Scratch directories are the worker's: it kills what dead workers left running.)
        open_store(self.settings).clear_tmp()
        shutil.rmtree(self.settings.broker_dir, ignore_errors=True)
        self.settings.service_token = SecretStr(secrets.token_urlsafe(32))
        if self.settings.secret_key is None:
            self.settings.secret_key = SecretStr(secret_key_of(self.data_dir))

    def start_worker(self) -> None:
        env = os.environ.copy()
        env["DIRACX_DATA_DIR"] = str(self.data_dir)
        if self.settings.secret_key is not None:  # the worker opens what the service sealed
            env["DIRACX_SECRET_KEY"] = self.settings.secret_key.get_secret_value()
        log_file = open(self.data_dir / "worker.log", "ab")  # noqa: SIM115 - owned by the child
        self.worker = subprocess.Popen(
            [sys.executable, "-m", "diracx.tasks", "worker", "--concurrency", "4"],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
        log_file.close()

    def stop_worker(self) -> None:
        if self.worker and self.worker.poll() is None:
            self.worker.terminate()
            try:
                # A short grace: Celery's warm shutdown of an idle worker takes ~3 s, and
                # whatever a killed worker leaves (held jobs, scratch) is recovered at start.
                self.worker.wait(WORKER_STOP_GRACE)
            except subprocess.TimeoutExpired:
                self.worker.kill()
                self.worker.wait()

    async def recover(self, db: PipelineDB, enqueue: Send) -> None:
        """The periodic tick, told that the workers marked stopped are gone: their jobs go
        back to Waiting at once, and every Waiting job is queued (the dead worker may
        have taken messages with it)."""
        await run_tick(db, self.settings, enqueue, recovering=True)

    async def serve(self) -> None:
        from diracx.routers.factory import create_app
        from diracx.routers.queue import CeleryJobQueue

        self.prepare()
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are
        # TCP, and without it every response waits 40 ms for a delayed acknowledgement.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        db = PipelineDB.from_settings(self.settings)
        # We hold the lock and our worker is not started yet: every worker known is gone.
        await db.mark_workers_stopped()
        self.start_worker()
        queue = CeleryJobQueue(self.settings)
        await self.recover(db, queue.enqueue)
        tracker = IdleTracker(create_app(self.settings))
        server = uvicorn.Server(
            uvicorn.Config(tracker, log_level="warning", lifespan="on", access_log=False)
        )
        engine_file = self.data_dir / ENGINE_FILE
        assert self.settings.service_token is not None
        write_private_json(
            engine_file,
            {
                "url": url,
                "token": self.settings.service_token.get_secret_value(),
                "pid": os.getpid(),
                "version": __version__,
                "started": time.time(),
            },
        )
        watchdog = asyncio.create_task(self._watch(server, tracker, db, queue.enqueue))
        # uvicorn stops on SIGTERM/SIGINT, then raises the signal again with the handlers
        # it found: with the default ones the process would die before the cleanup below
        # (engine.json, the worker's graceful stop). Give it handlers that do nothing.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _ignore_signal)
        try:
            await server.serve(sockets=[sock])
        finally:
            watchdog.cancel()
            with contextlib.suppress(FileNotFoundError):
                if json.loads(engine_file.read_text()).get("pid") == os.getpid():
                    engine_file.unlink()
            self.stop_worker()
            await db.close()

    async def _watch(
        self,
        server: uvicorn.Server,
        tracker: IdleTracker,
        db: PipelineDB,
        enqueue: Send,
    ) -> None:
        """Restart a worker that died; run the periodic tasks every ``periodic_interval``;
        stop the engine once it has been idle long enough."""
        loop = asyncio.get_running_loop()
        tick_at = loop.time() + self.settings.periodic_interval
        while True:
            await asyncio.sleep(min(WATCH_SECONDS, self.settings.periodic_interval))
            if self.worker is not None and self.worker.poll() is not None:
                log.error("the worker exited with %s; restarting it", self.worker.returncode)
                await db.mark_workers_stopped(hostname=socket.gethostname(), pid=self.worker.pid)
                self.start_worker()
                await self.recover(db, enqueue)
            elif loop.time() >= tick_at:
                tick_at = loop.time() + self.settings.periodic_interval
                try:
                    await run_tick(db, self.settings, enqueue)
                except Exception:  # the database may be busy or gone for a moment
                    log.warning("the periodic tasks failed; trying again later", exc_info=True)
            idle = time.monotonic() - tracker.last_request
            if idle > self.settings.engine_idle_timeout and await db.live_job_count() == 0:
                log.warning("idle for %.0f s: stopping", idle)
                server.should_exit = True
                return


def serve_embedded(port: int = 0) -> int:
    settings = ServiceSettings()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(EmbeddedEngine(settings, port).serve())
    except EngineAlreadyRunning as exc:
        print(f"diracx engine: {exc}", file=sys.stderr)
        return ENGINE_LOCKED
    return 0
