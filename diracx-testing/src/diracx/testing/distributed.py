"""A scaled-out DiracX for tests and benchmarks: every part a real server on loopback.

:func:`start_distributed` starts, with fresh state and free ports:

- a fresh database on a PostgreSQL server (the session's one, or one it starts),
- a Redis server (the Celery broker; :mod:`diracx.testing.redis`),
- a fresh bucket on moto's S3 server (:mod:`diracx.testing.s3`) when this DiracX has
  an S3 store (``DIRACX_STORE_URL``), else a shared store directory
  (``DIRACX_STORE_PATH``, as a shared filesystem would be),
- the migrations, run once like an operator would, before anything else,
- the API server, ``python -m diracx.routers serve`` (a real subprocess, not embedded),
- worker processes, ``python -m diracx.tasks worker``, each with a data directory of
  its own (its scratch space: they share nothing but the database, broker and store),
- the scheduler, ``python -m diracx.tasks scheduler`` (Celery beat: the periodic
  recovery that reschedules the jobs of lost workers and resends lost messages),

all configured with ``DIRACX_*`` variables only, as on separate machines. The
:class:`DistributedService` it returns has the URL and token for clients
(``DIRACX_URL``/``DIRACX_TOKEN``), and kills (``kill -9``) and restarts workers and
the API server for crash tests. :meth:`DistributedService.stop` stops everything
and checks that no process is left: servers, workers, and the builds that a killed
worker left running (builds run in sessions of their own, found by their
``TMPDIR``). Every process gets SIGKILL if the process that started it dies
(``PR_SET_PDEATHSIG``), so even a killed test run leaves nothing behind.

Like :mod:`diracx.testing.engine`, this module starts processes and reads files; of
DiracX it imports only :mod:`diracx.core`.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import importlib.util
import itertools
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diracx.core.settings import ServiceSettings
from diracx.testing.engine import descendants_of, identity, wait_gone
from diracx.testing.postgresql import PostgreSQLServer, start_postgresql
from diracx.testing.redis import RedisServer, start_redis
from diracx.testing.s3 import MotoServer, start_moto
from diracx.testing.utils import free_port

HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_GRACE = 5.0  # seconds a worker or server has to stop on SIGTERM before SIGKILL
PR_SET_PDEATHSIG = 1
# Workers of a test service: messages handled and builds run at once, per worker.
WORKER_CONCURRENCY = 2
WORKER_SLOTS = 4
STORE_PREFIX = "store"  # the key prefix of the store in the bucket
# Recovery in seconds, not minutes (the defaults suit production): the fixtures' settings.
# A worker reports every second; 6 s without a report means it is lost.
FAST_RECOVERY = {
    "DIRACX_PERIODIC_INTERVAL": "1",
    "DIRACX_HEARTBEAT_INTERVAL": "1",
    "DIRACX_HEARTBEAT_TIMEOUT": "6",
    "DIRACX_RESCHEDULE_BACKOFF": "0",
    "DIRACX_REQUEUE_AFTER": "3",
}
_OWN_PREFIX = "DIRACX_"
_DIGEST_CHARS = frozenset("0123456789abcdef")


class DistributedStartError(RuntimeError):
    """A part of the distributed service did not come up; the message ends with its log."""


def has_s3_store() -> bool:
    """Whether this DiracX can keep its store in S3 (``DIRACX_STORE_URL``, ``diracx.db.os``)."""
    return (
        "store_url" in ServiceSettings.model_fields
        and importlib.util.find_spec("diracx.db.os") is not None
    )


def _die_with_parent() -> None:
    """In a child: SIGKILL when the process that started it dies, even by ``kill -9``."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


# --------------------------------------------------------------------------- processes


@dataclass
class ManagedProcess:
    """One process of the service: started, killed and restarted with the same argv/env."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(repr=False)
    log_path: Path
    cwd: Path
    process: subprocess.Popen[bytes] | None = None
    started: int = 0  # start time (/proc), to tell it from a later process with its pid
    # every (pid, start time) this process and its children ever had: checked at stop
    known: dict[int, int] = field(default_factory=dict, repr=False)

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C of the test run reaches it through stop()
                preexec_fn=_die_with_parent,
            )
        ident = identity(self.process.pid)
        self.started = ident[1] if ident else 0
        if ident:
            self.known.setdefault(*ident)

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} was never started"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def log(self) -> str:
        return _tail(self.log_path)

    def remember(self) -> list[int]:
        """The process and its descendants now (remembered for the final check)."""
        if not self.alive():
            return []
        pids = [self.pid, *descendants_of(self.pid)]
        for pid in pids:
            ident = identity(pid)
            if ident is not None:
                self.known.setdefault(*ident)
        return pids

    def kill(self) -> None:
        """``kill -9``; wait until it is gone (its builds, in their own sessions, may stay)."""
        self.remember()
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
        if self.process is not None:
            self.process.wait(30)

    def terminate(self, grace: float = STOP_GRACE) -> None:
        """SIGTERM, then SIGKILL after *grace* seconds."""
        self.remember()
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process.wait(30)


# --------------------------------------------------------------------------- the service


@dataclass
class DistributedService:
    """A running distributed DiracX (see :func:`start_distributed`)."""

    base: Path
    url: str
    token: str
    service_env: dict[str, str] = field(repr=False)  # the servers' and workers' DIRACX_* settings
    postgresql: PostgreSQLServer = field(repr=False)
    database: str
    redis: RedisServer = field(repr=False)
    api: ManagedProcess = field(repr=False)
    workers: list[ManagedProcess] = field(repr=False)
    scheduler: ManagedProcess | None = field(default=None, repr=False)
    s3: MotoServer | None = field(default=None, repr=False)
    bucket: str | None = None  # the store's bucket on s3
    store_path: Path | None = None  # the shared store directory, without S3
    # what stop() undoes after the processes: servers and databases this service made
    _cleanups: list[Callable[[], None]] = field(default_factory=list, repr=False)
    _owns_base: bool = field(default=False, repr=False)  # remove base at stop (else: keep logs)
    _retired: list[ManagedProcess] = field(default_factory=list, repr=False)
    _stopped: bool = field(default=False, repr=False)

    # -- what clients need ----------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """The client's settings: ``DIRACX_URL`` and ``DIRACX_TOKEN``."""
        return {"DIRACX_URL": self.url, "DIRACX_TOKEN": self.token}

    @property
    def db_url(self) -> str:
        return self.service_env["DIRACX_DB_URL"]

    @property
    def broker_url(self) -> str:
        return self.service_env["DIRACX_BROKER_URL"]

    @property
    def pid(self) -> int:
        """The API server's pid."""
        return self.api.pid

    def worker_pids(self) -> list[int]:
        return [w.pid for w in self.workers if w.alive()]

    def processes(self) -> list[int]:
        """Every live process of the service that it started (API, workers, builds, scheduler)."""
        parts = [self.api, *self.workers, *([self.scheduler] if self.scheduler else [])]
        return [pid for p in parts for pid in p.remember()]

    # -- crash tests ----------------------------------------------------------------

    def worker_index(self, pid: int) -> int:
        for i, worker in enumerate(self.workers):
            if worker.process is not None and worker.pid == pid:
                return i
        raise ValueError(f"no worker of this service has pid {pid}")

    def kill_worker(self, index: int) -> int:
        """``kill -9`` worker *index*; return its pid. Its builds go on until reaped."""
        worker = self.workers[index]
        pid = worker.pid
        worker.kill()
        return pid

    def restart_worker(self, index: int, *, wait: bool = True) -> ManagedProcess:
        """Start worker *index* again, on its data directory (it reaps what the last left)."""
        old = self.workers[index]
        if old.alive():
            old.terminate()
        self._retired.append(old)
        new = ManagedProcess(old.name, old.argv, old.env, old.log_path, old.cwd)
        new.start()
        self.workers[index] = new
        if wait:
            self.wait_workers_registered([new])
        return new

    def kill_api(self) -> None:
        """``kill -9`` the API server."""
        self.api.kill()

    def restart_api(self) -> None:
        """Start the API server again on the same port; return once it answers."""
        if self.api.alive():
            self.api.terminate()
        self._retired.append(self.api)
        self.api = ManagedProcess(
            self.api.name, self.api.argv, self.api.env, self.api.log_path, self.api.cwd
        )
        self.api.start()
        _wait_api(self.api, self.url)

    # -- inspecting the state -------------------------------------------------------

    def query(self, sql: str) -> list[tuple[str, ...]]:
        """Rows of *sql* on the service's database, as strings (through psql)."""
        out = self.postgresql.psql(sql, self.database)
        return [tuple(line.split("|")) for line in out.splitlines() if line]

    def scalar(self, sql: str) -> int:
        return int(self.query(sql)[0][0])

    def row_counts(self, tables: Sequence[str]) -> dict[str, int]:
        return {t: self.scalar(f"select count(*) from {t}") for t in tables}

    def wait_workers_registered(
        self, workers: Sequence[ManagedProcess] | None = None, timeout: float = START_TIMEOUT
    ) -> None:
        """Wait until each worker has registered in the database (its runtime is up)."""
        pending = list(workers if workers is not None else self.workers)
        deadline = time.monotonic() + timeout
        while pending:
            registered = {int(r[0]) for r in self.query("select pid from workers")}
            pending = [w for w in pending if w.pid not in registered]
            for w in pending:
                if not w.alive():
                    raise DistributedStartError(
                        f"{w.name} exited with code {w.exit_code()} while starting; "
                        f"its log ends with:\n{w.log()}"
                    )
            if pending and time.monotonic() > deadline:
                raise DistributedStartError(
                    f"{', '.join(w.name for w in pending)} did not register within "
                    f"{timeout:.0f} s; the log of {pending[0].name}:\n{pending[0].log()}"
                )
            if pending:
                time.sleep(0.1)

    def store_objects(self) -> list[str]:
        """The names of every object in the store (S3 keys, or paths in the directory)."""
        if self.s3 is not None:
            client = self.s3.client()
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{STORE_PREFIX}/"
            )
            return [obj["Key"] for page in pages for obj in page.get("Contents", [])]
        assert self.store_path is not None
        return [
            str(p.relative_to(self.store_path)) for p in self.store_path.rglob("*") if p.is_file()
        ]

    def blobs(self) -> Iterator[tuple[str, bytes]]:
        """Every blob in the store: (its name, which should be its digest, its bytes)."""
        if self.s3 is not None:
            client = self.s3.client()
            prefix = f"{STORE_PREFIX}/blobs/"
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    body = client.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                    yield obj["Key"][len(prefix) :], body
        else:
            assert self.store_path is not None
            for path in sorted((self.store_path / "blobs").rglob("*")):
                if path.is_file():
                    yield f"{path.parent.name}{path.name}", path.read_bytes()

    def bad_blobs(self) -> list[str]:
        """Blobs of the store whose bytes do not hash to their name (a partial write...)."""
        return [
            name
            for name, data in self.blobs()
            if len(name) != 64
            or not set(name) <= _DIGEST_CHARS
            or hashlib.sha256(data).hexdigest() != name
        ]

    def logs(self) -> str:
        """The tails of the servers' and workers' logs, for failure messages."""
        parts = [self.api, *self.workers, *([self.scheduler] if self.scheduler else [])]
        return "\n".join(f"--- {p.name} ({p.log_path})\n{p.log()}" for p in parts)

    # -- stopping -------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything; raise if any process of the service is still running after."""
        if self._stopped:
            return
        self._stopped = True
        errors: list[str] = []
        workers = [*self.workers, *self._retired]
        if self.scheduler is not None:
            workers.append(self.scheduler)
        everything = [*workers, self.api]
        for proc in everything:
            proc.remember()
        # Workers first, all at once (each has STOP_GRACE to finish), then what they use.
        for proc in workers:
            if proc.process is not None and proc.process.poll() is None:
                proc.process.terminate()
        for proc in workers:
            _step(errors, proc.terminate)
        for proc in workers:
            _step(errors, kill_builds, proc.cwd)
        _step(errors, self.api.terminate)
        known = [(pid, st) for p in everything for pid, st in p.known.items()]
        for pid in wait_gone(known, 10.0):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        left = wait_gone(known, 10.0)
        if left:
            errors.append(f"processes {left} of the distributed service are still running")
        for undo in reversed(self._cleanups):
            _step(errors, undo)
        if self._owns_base:
            shutil.rmtree(self.base, ignore_errors=True)
        if errors:
            raise AssertionError("; ".join(errors))

    def __enter__(self) -> DistributedService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _step(errors: list[str], fn: Callable[..., Any], *args: Any) -> None:
    """Run one stop step; keep going if it fails (every other part must still stop)."""
    try:
        fn(*args)
    except Exception as exc:
        errors.append(f"{getattr(fn, '__qualname__', fn)}: {exc}")


def build_processes(root: Path) -> list[int]:
    """Processes whose ``TMPDIR`` lies under *root*: builds of the workers of that directory."""
    marker = f"TMPDIR={root}/".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError), open(f"/proc/{entry}/environ", "rb") as f:
            if any(v.startswith(marker) for v in f.read().split(b"\0")):
                found.append(int(entry))
    return found


def kill_builds(root: Path) -> None:
    """SIGKILL the builds under *root* (a killed worker's builds outlive it) and wait."""
    found = [i for i in (identity(p) for p in build_processes(root)) if i is not None]
    for pid, _ in found:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(os.getpgid(pid), signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    left = wait_gone(found, 10.0)
    if left:
        raise AssertionError(f"builds {left} under {root} survived SIGKILL")


def _wait_api(api: ManagedProcess, url: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not api.alive():
            raise DistributedStartError(
                f"the API server exited with code {api.exit_code()} while starting; "
                f"its log ends with:\n{api.log()}"
            )
        if _http_ok(f"{url}/api/health/ready"):
            return
        time.sleep(0.05)
    raise DistributedStartError(
        f"the API server did not answer within {timeout:.0f} s; its log ends with:\n{api.log()}"
    )


def _clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """Our environment without any ``DIRACX_*`` setting (they would point elsewhere)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIX)}
    env.update(extra)
    return env


def _python_m(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _migrate(env: dict[str, str], base: Path) -> None:
    """Apply the migrations once, as an operator does before starting the services:
    ``dirac db upgrade`` (the Python call it makes, where the CLI does not have it yet)."""
    argv = _python_m("diracx.cli", "db", "upgrade")
    proc = subprocess.run(argv, env=env, cwd=base, capture_output=True, text=True, timeout=120)
    if proc.returncode == 2 and "No such command" in proc.stderr:
        script = (
            "from diracx.core.settings import ServiceSettings\n"
            "from diracx.db.migrate import upgrade\n"
            "upgrade(ServiceSettings().resolved_db_url())\n"
        )
        argv = [sys.executable, "-c", script]
        proc = subprocess.run(argv, env=env, cwd=base, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise DistributedStartError(
            f"the migrations failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )


def start_distributed(
    base: Path | None = None,
    *,
    workers: int | Sequence[Sequence[str]] = 3,
    postgresql: PostgreSQLServer | None = None,
    redis: RedisServer | None = None,
    s3: MotoServer | bool | None = None,
    extra_env: Mapping[str, str] | None = None,
    worker_env: Sequence[Mapping[str, str]] | None = None,
    worker_slots: int = WORKER_SLOTS,
    worker_concurrency: int = WORKER_CONCURRENCY,
    scheduler: bool = True,
    wait_workers: bool = True,
) -> DistributedService:
    """Start a distributed DiracX in *base* (a new temporary directory, removed at stop,
    by default; a given one is kept, with the logs).

    *workers* is how many workers to start, or the extra command-line arguments of
    each one (``[["--queues", "gpu"], []]``). *postgresql*, *redis*, *s3*: running
    servers to use (a fresh database, a fresh Redis database, a fresh bucket on them);
    else each is started here and stopped with the service. *s3*: also ``False`` for
    a shared store directory, ``True`` to insist on S3; by default S3 when this
    DiracX has an S3 store. *extra_env* is added to every server and worker's
    environment (``FAST_RECOVERY`` for crash tests), *worker_env* to each worker's.
    *scheduler*: run the periodic tasks too (``python -m diracx.tasks scheduler``,
    Celery beat: recovery of lost workers and messages). If any part fails to start,
    what was started is stopped again.
    """
    owns_base = base is None
    base = Path(tempfile.mkdtemp(prefix="diracx-dist-")) if base is None else base
    base.mkdir(parents=True, exist_ok=True)
    use_s3 = has_s3_store() if s3 is None or isinstance(s3, MotoServer) else s3
    cleanups: list[Callable[[], None]] = []
    procs: list[ManagedProcess] = []
    try:
        if postgresql is None:
            postgresql = start_postgresql()
            cleanups.append(postgresql.stop)
        pg = postgresql
        database = pg.create_database()
        cleanups.append(lambda: pg.drop_database(database))
        if redis is None:
            redis = start_redis()
            cleanups.append(redis.stop)
            broker_url = redis.url(0)
        else:
            db = _next_redis_db()
            redis.flush(db)
            broker_url = redis.url(db)
        token = secrets.token_urlsafe(32)
        settings: dict[str, str] = {
            "DIRACX_DB_URL": pg.url(database),
            "DIRACX_BROKER_URL": broker_url,
            "DIRACX_SERVICE_TOKEN": token,
        }
        moto: MotoServer | None = None
        bucket: str | None = None
        store_path: Path | None = None
        if use_s3:
            if isinstance(s3, MotoServer):
                moto = s3
            else:
                moto = start_moto()
                cleanups.append(moto.stop)
            bucket = moto.create_bucket()
            cleanups.append(lambda: _delete_bucket(moto, bucket))
            settings.update(moto.settings_env(bucket, STORE_PREFIX))
        else:
            store_path = base / "store"
            settings["DIRACX_STORE_PATH"] = str(store_path)
        settings.update(extra_env or {})

        def env_for(data_dir: Path, more: Mapping[str, str] | None = None) -> dict[str, str]:
            data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            return _clean_env({**settings, "DIRACX_DATA_DIR": str(data_dir), **(more or {})})

        api_dir = base / "api"
        _migrate(env_for(api_dir), base)
        port = free_port(HOST)
        url = f"http://{HOST}:{port}"
        serve = ["serve", "--host", HOST, "--port", str(port), "--no-migrate"]
        api = ManagedProcess(
            "api", _python_m("diracx.routers", *serve), env_for(api_dir), base / "api.log", api_dir
        )
        api.start()
        procs.append(api)
        worker_args = [[] for _ in range(workers)] if isinstance(workers, int) else workers
        worker_procs: list[ManagedProcess] = []
        for i, args in enumerate(worker_args):
            wdir = base / f"worker-{i}"
            argv = _python_m(
                "diracx.tasks",
                "worker",
                "--concurrency",
                str(worker_concurrency),
                "--slots",
                str(worker_slots),
                *args,
            )
            env = env_for(wdir, worker_env[i] if worker_env else None)
            worker = ManagedProcess(f"worker-{i}", argv, env, wdir / "worker.log", wdir)
            worker.start()
            procs.append(worker)
            worker_procs.append(worker)
        sched: ManagedProcess | None = None
        if scheduler:
            sdir = base / "scheduler"
            argv = _python_m("diracx.tasks", "scheduler")
            sched = ManagedProcess("scheduler", argv, env_for(sdir), sdir / "scheduler.log", sdir)
            sched.start()
            procs.append(sched)
        _wait_api(api, url)
        service = DistributedService(
            base=base,
            url=url,
            token=token,
            service_env=settings,
            postgresql=pg,
            database=database,
            redis=redis,
            api=api,
            workers=worker_procs,
            scheduler=sched,
            s3=moto,
            bucket=bucket,
            store_path=store_path,
            _cleanups=cleanups,
            _owns_base=owns_base,
        )
    except BaseException:
        for proc in reversed(procs):
            with contextlib.suppress(Exception):
                proc.terminate()
        for undo in reversed(cleanups):
            with contextlib.suppress(Exception):
                undo()
        if owns_base:
            shutil.rmtree(base, ignore_errors=True)
        raise
    if wait_workers:
        try:
            service.wait_workers_registered()
        except BaseException:
            service.stop()
            raise
    return service


_redis_dbs = itertools.count()


def _next_redis_db() -> int:
    """A database of a shared Redis server for the next service (1-15, in turn; the
    session's fixtures count from another offset, so they rarely meet)."""
    return 15 - next(_redis_dbs) % 15


def _delete_bucket(moto: MotoServer, bucket: str) -> None:
    with contextlib.suppress(Exception):  # the server may be gone already
        moto.delete_bucket(bucket)
