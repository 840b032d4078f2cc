"""The PostgreSQL fixtures start a real server, and clean up after themselves."""

from __future__ import annotations

import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from diracx.testing import postgresql
from diracx.testing.postgresql import PostgreSQLServer, PostgreSQLUnavailableError, start_postgresql


def plain_dsn(url: str) -> str:
    """asyncpg.connect() wants ``postgresql://``, SQLAlchemy ``postgresql+asyncpg://``."""
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def test_postgresql_url_shape(postgresql_url: str) -> None:
    assert re.fullmatch(
        r"postgresql\+asyncpg://postgres@127\.0\.0\.1:\d+/diracx_test", postgresql_url
    )


async def test_postgresql_url_accepts_queries(postgresql_url: str) -> None:
    conn = await asyncpg.connect(plain_dsn(postgresql_url))
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("select current_database()") == "diracx_test"
        assert await conn.fetchval("select current_user") == "postgres"
    finally:
        await conn.close()


async def test_server_is_configured_for_tests(postgresql_server: PostgreSQLServer) -> None:
    conn = await asyncpg.connect(postgresql_server.dsn("postgres"))
    try:
        settings = {
            name: await conn.fetchval(f"show {name}")
            for name in (
                "listen_addresses",
                "port",
                "fsync",
                "synchronous_commit",
                "unix_socket_directories",
            )
        }
    finally:
        await conn.close()
    assert settings == {
        "listen_addresses": "127.0.0.1",
        "port": str(postgresql_server.port),
        "fsync": "off",
        "synchronous_commit": "off",
        "unix_socket_directories": str(postgresql_server.base),
    }
    assert (postgresql_server.base / f".s.PGSQL.{postgresql_server.port}").is_socket()


def test_server_never_runs_as_root(postgresql_server: PostgreSQLServer) -> None:
    owner = Path(f"/proc/{postgresql_server.process.pid}").stat().st_uid
    expected = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert owner == expected
    assert postgresql_server.datadir.stat().st_uid == expected


async def test_fresh_database_is_new_and_empty(
    fresh_postgresql_url: str, postgresql_url: str
) -> None:
    assert fresh_postgresql_url != postgresql_url
    conn = await asyncpg.connect(plain_dsn(fresh_postgresql_url))
    try:
        tables = await conn.fetchval(
            "select count(*) from information_schema.tables where table_schema = 'public'"
        )
        assert tables == 0
        await conn.execute("create table t (x int)")  # it is ours to write in
    finally:
        await conn.close()


async def test_fresh_databases_are_distinct(
    fresh_postgresql_url: str, postgresql_server: PostgreSQLServer
) -> None:
    other = postgresql_server.create_database()
    try:
        assert postgresql_server.url(other) != fresh_postgresql_url
    finally:
        postgresql_server.drop_database(other)


async def test_drop_database_disconnects_clients(postgresql_server: PostgreSQLServer) -> None:
    name = postgresql_server.create_database()
    conn = await asyncpg.connect(postgresql_server.dsn(name))
    try:
        postgresql_server.drop_database(name)  # WITH (FORCE): a leaked connection cannot block it
        remaining = postgresql_server.psql(
            f"select count(*) from pg_database where datname = '{name}'"
        )
        assert remaining.strip() == "0"
    finally:
        conn.terminate()


def test_database_names_are_checked(postgresql_server: PostgreSQLServer) -> None:
    with pytest.raises(ValueError, match="database name"):
        postgresql_server.create_database('x"; drop database postgres; --')


def test_missing_binaries_say_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DIRACX_TEST_PG_BINDIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(postgresql, "glob", lambda pattern: [])
    with pytest.raises(PostgreSQLUnavailableError) as info:
        start_postgresql()
    assert "make test" in str(info.value)
    assert "apt-get install postgresql" in str(info.value)


@pytest.mark.postgresql  # starts its own server
def test_failed_start_reports_the_server_log(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made: list[str] = []
    real_mkdtemp = postgresql.tempfile.mkdtemp

    def mkdtemp(**kwargs: str) -> str:
        made.append(real_mkdtemp(**kwargs))
        return made[-1]

    monkeypatch.setattr(postgresql.tempfile, "mkdtemp", mkdtemp)
    with pytest.raises(PostgreSQLUnavailableError) as info:
        start_postgresql(settings={"shared_buffers": "not-a-size"})
    assert "exited" in str(info.value)
    assert "shared_buffers" in str(info.value)  # the log tells what is wrong
    assert made
    assert not Path(made[0]).exists()


@pytest.mark.postgresql  # starts its own server
def test_a_taken_port_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        ports = iter([busy, postgresql.free_port()])
        monkeypatch.setattr(postgresql, "free_port", lambda host: next(ports))
        with start_postgresql() as server:
            assert server.port != busy
            assert server.psql("select 1").strip() == "1"
            assert "could not bind" not in server.log()  # the failed attempt's log was dropped
    assert server.process.poll() is not None
    assert not server.base.exists()


@pytest.mark.postgresql  # starts its own server
def test_stop_kills_the_server_and_removes_its_directory() -> None:
    server = start_postgresql()
    assert server.process.poll() is None
    assert server.datadir.is_dir()
    server.stop()
    assert server.process.poll() is not None
    assert not server.base.exists()
    server.stop()  # idempotent


@pytest.mark.postgresql  # starts its own server
def test_killed_test_process_leaves_no_server() -> None:
    """The watchdog stops the server if the test process dies without cleaning up."""
    script = (
        "import os, signal\n"
        "from diracx.testing import start_postgresql\n"
        "s = start_postgresql()\n"
        "print(s.base, s.process.pid, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    base, pid = proc.stdout.split()
    deadline = time.monotonic() + 20
    while Path(base).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(base).exists()
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():  # not reaped yet (its parent is gone): it must have exited
        assert stat.read_text().rpartition(")")[2].split()[0] in "ZX"
