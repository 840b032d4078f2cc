"""A real, throw-away PostgreSQL server for tests.

The server is started from the distribution's binaries (Debian puts them in
``/usr/lib/postgresql/<version>/bin``) in a fresh temporary directory, listens
only on 127.0.0.1 on a free port (its unix socket lives in the temporary
directory), and trades durability for speed (``fsync=off`` and friends).
PostgreSQL refuses to run as root: when the tests run as root, ``initdb`` and the
server run as the ``postgres`` system user, in a directory owned by that user.

A watchdog process stops the server and removes its directory if the test
process dies without cleaning up (killed by a timeout, SIGKILL...), so no server
is ever left behind.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import TypedDict

from diracx.testing.utils import free_port

HOST = "127.0.0.1"
SUPERUSER = "postgres"  # the database role; trust authentication on loopback
SERVICE_USER = "postgres"  # the system user the server runs as when the tests run as root
REQUIRED_BINARIES = ("initdb", "pg_ctl", "postgres", "pg_isready", "psql")
DB_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}\Z")

INSTALL_HINT = (
    "`make test` installs them (it runs `apt-get install postgresql`); "
    "or install them yourself: apt-get install postgresql"
)

# Durability is useless for a test server that is thrown away: trade it for speed.
SERVER_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "autovacuum": "off",
    "jit": "off",
    "max_connections": "200",
    "timezone": "UTC",
    "log_timezone": "UTC",
    "log_checkpoints": "off",
}

_WATCHDOG = """
import os, shutil, signal, sys, time
pid, base = int(sys.argv[1]), sys.argv[2]
sys.stdin.buffer.read()  # EOF: the test process is gone without stopping the server
try:
    os.kill(pid, signal.SIGQUIT)  # PostgreSQL's immediate shutdown
except ProcessLookupError:
    pass
deadline = time.monotonic() + 15
while time.monotonic() < deadline:
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rpartition(")")[2].split()[0] in "ZX":
                break  # exited; only its parent can reap it
    except FileNotFoundError:
        break
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
    time.sleep(0.05)
shutil.rmtree(base, ignore_errors=True)
"""


class PostgreSQLUnavailableError(RuntimeError):
    """PostgreSQL cannot be started here; the message says what to do."""


def find_bindir() -> Path:
    """The directory holding initdb, pg_ctl, postgres, pg_isready and psql.

    ``$DIRACX_TEST_PG_BINDIR`` wins; then the newest ``/usr/lib/postgresql/*/bin``
    (Debian, Ubuntu); then the directory of ``pg_ctl`` on ``PATH``.
    """
    candidates: list[Path] = []
    if env := os.environ.get("DIRACX_TEST_PG_BINDIR"):
        candidates.append(Path(env))

    def version_key(path: str) -> tuple[int, ...]:
        version = Path(path).parent.name
        return tuple(int(p) for p in version.split(".") if p.isdigit())

    candidates += [
        Path(p) for p in sorted(glob("/usr/lib/postgresql/*/bin"), key=version_key, reverse=True)
    ]
    if pg_ctl := shutil.which("pg_ctl"):
        candidates.append(Path(pg_ctl).resolve().parent)
    for bindir in candidates:
        if all(
            os.access(bindir / name, os.X_OK)
            for name in ("initdb", "pg_ctl", "postgres", "pg_isready")
        ):
            return bindir
    raise PostgreSQLUnavailableError(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found in "
        "/usr/lib/postgresql/*/bin, $DIRACX_TEST_PG_BINDIR or PATH: " + INSTALL_HINT
    )


def _binary(bindir: Path, name: str) -> str:
    path = bindir / name
    if os.access(path, os.X_OK):
        return str(path)
    if found := shutil.which(name):
        return found
    raise PostgreSQLUnavailableError(
        f"PostgreSQL's {name} was not found in {bindir} or PATH: {INSTALL_HINT}"
    )


def _traversable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether user *uid* can reach into *path* (every ancestor searchable)."""
    for directory in [path, *path.parents]:
        try:
            st = directory.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True


@dataclass
class _RunAs:
    """Which system user runs initdb and the server: ``postgres`` for root, else ourselves."""

    uid: int
    gid: int
    name: str
    home: str

    @classmethod
    def pick(cls) -> _RunAs:
        if os.geteuid() != 0:
            entry = pwd.getpwuid(os.geteuid())
            return cls(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir)
        try:
            entry = pwd.getpwnam(SERVICE_USER)
        except KeyError:
            raise PostgreSQLUnavailableError(
                f"the tests run as root, and PostgreSQL refuses to run as root, but there is no "
                f"{SERVICE_USER!r} system user to run it as: {INSTALL_HINT} (it creates the user)"
            ) from None
        return cls(entry.pw_uid, entry.pw_gid, entry.pw_name, entry.pw_dir)

    @property
    def switch(self) -> bool:
        return self.uid != os.geteuid()

    def popen_kwargs(self) -> _UserKwargs:
        """Arguments of subprocess.run/Popen that run the command as this user."""
        if not self.switch:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}


class _UserKwargs(TypedDict, total=False):
    user: int
    group: int
    extra_groups: list[int]


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without PG* variables, which would change where clients connect."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra)
    return env


@dataclass
class PostgreSQLServer:
    """A running test server. ``url(db)`` gives SQLAlchemy URLs, ``dsn(db)`` libpq/asyncpg ones."""

    bindir: Path
    base: Path  # the temporary directory: data/, the unix socket and the log
    port: int
    run_as: _RunAs
    process: subprocess.Popen[bytes]
    watchdog: subprocess.Popen[bytes] | None = None
    host: str = HOST
    user: str = SUPERUSER
    _stopped: bool = field(default=False, repr=False)

    @property
    def datadir(self) -> Path:
        return self.base / "data"

    @property
    def logfile(self) -> Path:
        return self.base / "postgresql.log"

    def url(self, database: str, driver: str = "asyncpg") -> str:
        """SQLAlchemy URL of *database*, ``postgresql+asyncpg://postgres@127.0.0.1:PORT/db``."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        return f"{scheme}://{self.user}@{self.host}:{self.port}/{database}"

    def dsn(self, database: str) -> str:
        """libpq-style URL of *database*, for ``asyncpg.connect()`` or ``psql``."""
        return self.url(database, driver="")

    def log(self) -> str:
        try:
            return self.logfile.read_text(errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run *sql* with psql as the superuser; return its unaligned, tuples-only output."""
        argv = [
            _binary(self.bindir, "psql"),
            "-X", "-q", "-A", "-t", "-w", "-v", "ON_ERROR_STOP=1",
            "-h", self.host, "-p", str(self.port), "-U", self.user, "-d", database,
            "-c", sql,
        ]  # fmt: skip
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, env=_clean_env(PGCONNECT_TIMEOUT="10")
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"psql failed on {sql!r} (exit {proc.returncode}): {proc.stderr.strip()}"
            )
        return proc.stdout

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a unique name unless *name* is given); return its name."""
        name = name or f"diracx_{uuid.uuid4().hex[:16]}"
        if not DB_NAME_RE.match(name):
            raise ValueError(f"database name {name!r} must be lowercase letters, digits and '_'")
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        """Drop *name*, disconnecting whoever is still connected to it."""
        if not DB_NAME_RE.match(name):
            raise ValueError(f"database name {name!r} must be lowercase letters, digits and '_'")
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server at once (``pg_ctl stop -m immediate``) and remove its directory."""
        if self._stopped:
            return
        self._stopped = True
        if self.watchdog is not None:  # we clean up ourselves: the watchdog is not needed
            self.watchdog.kill()
            self.watchdog.wait()
        try:
            if self.process.poll() is None:
                pg_ctl = _binary(self.bindir, "pg_ctl")
                subprocess.run(
                    [pg_ctl, "stop", "-D", str(self.datadir), "-m", "immediate", "-w", "-t", "15"],
                    capture_output=True,
                    timeout=30,
                    env=_clean_env(),
                    **self.run_as.popen_kwargs(),
                )
                try:
                    self.process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.process.send_signal(signal.SIGQUIT)
                    try:
                        self.process.wait(timeout=5)
                    except subprocess.TimeoutExpired:
                        self.process.kill()
                        self.process.wait()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgreSQLServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _pick_base_dir(run_as: _RunAs) -> Path:
    """A temporary-directory parent the server's user can reach into."""
    candidates = [Path(tempfile.gettempdir()), Path("/tmp"), Path("/var/tmp")]
    for parent in candidates:
        if parent.is_dir() and _traversable_by(parent, run_as.uid, run_as.gid):
            return parent
    raise PostgreSQLUnavailableError(
        f"no temporary directory is reachable by the {run_as.name!r} user "
        f"(tried {', '.join(map(str, candidates))})"
    )


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _spawn_watchdog(pid: int, base: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(pid), str(base)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C of the test run must not kill it before it cleans up
    )


def start_postgresql(
    *,
    timeout: float = 30.0,
    settings: dict[str, str] | None = None,
    attempts: int = 5,
) -> PostgreSQLServer:
    """Initialize a cluster in a new temporary directory and start a server on a free port.

    Returns once the server accepts connections; raises PostgreSQLUnavailableError
    with the server's log if it does not within *timeout* seconds. Call ``stop()``
    (or use the server as a context manager) to stop it and remove its directory.
    """
    bindir = find_bindir()
    run_as = _RunAs.pick()
    base = Path(tempfile.mkdtemp(prefix="diracx-pg-", dir=_pick_base_dir(run_as)))
    try:
        if run_as.switch:
            os.chown(base, run_as.uid, run_as.gid)
        env = _clean_env(LC_ALL="C", LANG="C", TZ="UTC", HOME=str(base))
        initdb = subprocess.run(
            [
                _binary(bindir, "initdb"),
                "-D",
                str(base / "data"),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            capture_output=True,
            text=True,
            timeout=max(timeout, 60),
            env=env,
            cwd=base,
            **run_as.popen_kwargs(),
        )
        if initdb.returncode != 0:
            raise PostgreSQLUnavailableError(
                f"initdb failed (exit {initdb.returncode}):\n{initdb.stdout}\n{initdb.stderr}"
            )
        last_log = ""
        for _ in range(attempts):
            server = _start_server(
                bindir, base, run_as, env, {**SERVER_SETTINGS, **(settings or {})}, timeout
            )
            if isinstance(server, PostgreSQLServer):
                return server
            last_log = server
        raise PostgreSQLUnavailableError(
            f"PostgreSQL found no free port in {attempts} attempts; last log:\n{_tail(last_log)}"
        )
    except BaseException:
        shutil.rmtree(base, ignore_errors=True)
        raise


def _start_server(
    bindir: Path,
    base: Path,
    run_as: _RunAs,
    env: dict[str, str],
    settings: dict[str, str],
    timeout: float,
) -> PostgreSQLServer | str:
    """Start the server on a free port: the server, or its log if the port was taken."""
    port = free_port(HOST)
    logfile = base / "postgresql.log"
    options: list[str] = []
    all_settings = {
        **settings,
        "listen_addresses": HOST,
        "port": str(port),
        "unix_socket_directories": str(base),
    }
    for key, value in all_settings.items():
        options += ["-c", f"{key}={value}"]
    with open(logfile, "ab") as log:
        process = subprocess.Popen(
            [_binary(bindir, "postgres"), "-D", str(base / "data"), *options],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env=env,
            cwd=base,
            start_new_session=True,  # a Ctrl-C of the test run is handled by our teardown
            **run_as.popen_kwargs(),
        )
    server = PostgreSQLServer(bindir=bindir, base=base, port=port, run_as=run_as, process=process)
    server.watchdog = _spawn_watchdog(process.pid, base)
    try:
        _wait_ready(server, timeout)
    except _PortTaken:
        log_text = server.log()
        _stop_quietly(server)
        logfile.write_text("")  # keep only the next attempt's log
        return log_text
    except BaseException:
        _stop_quietly(server, remove=True)
        raise
    return server


class _PortTaken(Exception):
    pass


def _stop_quietly(server: PostgreSQLServer, *, remove: bool = False) -> None:
    """Stop a server that did not start; keep its directory unless *remove*."""
    if server.watchdog is not None:
        server.watchdog.kill()
        server.watchdog.wait()
        server.watchdog = None
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGQUIT)
        try:
            server.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait()
    server._stopped = True
    if remove:
        shutil.rmtree(server.base, ignore_errors=True)


def _pidfile_status(server: PostgreSQLServer) -> str | None:
    """The postmaster's status line in postmaster.pid ("starting", "ready"...), if it is ours."""
    try:
        lines = (server.datadir / "postmaster.pid").read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    if len(lines) < 8 or lines[0].strip() != str(server.process.pid):
        return None
    return lines[7].strip()


def _wait_ready(server: PostgreSQLServer, timeout: float) -> None:
    pg_isready: Sequence[str] = [
        _binary(server.bindir, "pg_isready"),
        "-q", "-h", server.host, "-p", str(server.port),
        "-U", server.user, "-d", "postgres", "-t", "2",
    ]  # fmt: skip
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        code = server.process.poll()
        if code is not None:
            log = server.log()
            if "could not bind" in log or "Address already in use" in log:
                raise _PortTaken
            raise PostgreSQLUnavailableError(
                f"the PostgreSQL server exited with code {code} while starting; "
                f"its log:\n{_tail(log)}"
            )
        # The postmaster announces "ready" in postmaster.pid (as pg_ctl -w sees it), then
        # pg_isready confirms over TCP: asking only once it is ready never blocks on a
        # port that some other program holds.
        if _pidfile_status(server) == "ready":
            with contextlib.suppress(subprocess.TimeoutExpired):
                if subprocess.run(pg_isready, timeout=10, env=_clean_env()).returncode == 0:
                    return
        if time.monotonic() > deadline:
            raise PostgreSQLUnavailableError(
                f"the PostgreSQL server did not accept connections on {server.host}:{server.port} "
                f"within {timeout:.0f} s; its log:\n{_tail(server.log())}"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.2)
