"""The operator's commands, as real subprocesses: ``dirac db upgrade`` and ``dirac worker``.

``dirac db upgrade`` on a fresh SQLite file and a fresh PostgreSQL database (the
revision before and after), and its message when the database cannot be reached;
``dirac worker`` with its queues and resources, as registered in the database.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diracx.db.migrate import HEAD  # the newest migration
from diracx.testing import free_port

pytestmark = pytest.mark.timeout(120)


def dirac(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``dirac ARGS`` (``python -m diracx.cli``) with only *env*'s DiracX settings."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("DIRACX_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "diracx.cli", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=90,
    )


def upgrade_twice(url: str) -> None:
    first = dirac("db", "upgrade", env={"DIRACX_DB_URL": url})
    assert first.returncode == 0, first.stderr
    assert "revision before: none" in first.stdout
    assert f"revision after:  {HEAD} (the newest)" in first.stdout
    again = dirac("db", "upgrade", env={"DIRACX_DB_URL": url})
    assert again.returncode == 0, again.stderr
    assert f"revision before: {HEAD}" in again.stdout and "nothing to do" in again.stdout


def test_db_upgrade_on_a_fresh_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "diracx.db"
    upgrade_twice(f"sqlite+aiosqlite:///{path}")
    with sqlite3.connect(path) as conn:
        assert conn.execute("select version_num from alembic_version").fetchall() == [(HEAD,)]
        columns = {r[1] for r in conn.execute("pragma table_info(workers)")}
    assert {"queues", "slots", "memory_mb", "gpus", "stopped"} <= columns


def test_db_upgrade_step_by_step(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'diracx.db'}"
    first = dirac("db", "upgrade", "--revision", "0001", env={"DIRACX_DB_URL": url})
    assert first.returncode == 0 and "revision after:  0001\n" in first.stdout, first
    second = dirac("db", "upgrade", env={"DIRACX_DB_URL": url})
    assert "revision before: 0001" in second.stdout and f"after:  {HEAD}" in second.stdout
    bad = dirac("db", "upgrade", "--revision", "9999", env={"DIRACX_DB_URL": url})
    assert bad.returncode == 1 and "9999" in bad.stderr and "Traceback" not in bad.stderr


def test_db_upgrade_on_a_fresh_postgresql_database(fresh_postgresql_url: str) -> None:
    upgrade_twice(fresh_postgresql_url)


def test_db_upgrade_says_when_the_database_cannot_be_reached() -> None:
    url = f"postgresql://diracx:hunter2-secret@127.0.0.1:{free_port()}/diracx"
    result = dirac("db", "upgrade", env={"DIRACX_DB_URL": url})
    assert result.returncode == 1
    assert "cannot reach the database postgresql://diracx:***@127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "hunter2" not in result.stderr + result.stdout  # the password is never shown
    nonsense = dirac("db", "upgrade", env={"DIRACX_DB_URL": "not a url"})
    assert nonsense.returncode == 1 and "DIRACX_DB_URL" in nonsense.stderr
    assert "Traceback" not in nonsense.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--memory", "lots"], "memory 'lots' must be a size"),
        (["--queues", "gpu,bad queue"], "queue 'bad queue'"),
        (["--queues", ","], "at least one queue"),
        (["--slots", "0"], "slots"),
        (["--gpus", "-1"], "gpus"),
    ],
)
def test_worker_options_are_checked(args: list[str], message: str) -> None:
    result = dirac("worker", *args, env={})
    assert result.returncode != 0
    assert message in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_worker_registers_what_it_serves_and_stops_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "diracx.db"
    env = {"DIRACX_DB_URL": f"sqlite+aiosqlite:///{path}", "DIRACX_DATA_DIR": str(tmp_path)}
    assert dirac("db", "upgrade", env=env).returncode == 0
    full = {k: v for k, v in os.environ.items() if not k.startswith("DIRACX_")} | env
    argv = ["worker", "--queues", "default,gpu", "--slots", "3", "--memory", "16G", "--gpus", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "diracx.cli", *argv],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        rows: list[tuple[str, int, int, int, str | None]] = []
        while not rows and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout and proc.stdout.read()
            with sqlite3.connect(path) as conn:
                rows = conn.execute(
                    "select queues, slots, memory_mb, gpus, stopped from workers where pid = ?",
                    (proc.pid,),  # dirac worker becomes the worker process (exec)
                ).fetchall()
            time.sleep(0.1)
        [(queues, slots, memory_mb, gpus, stopped)] = rows
        assert (json.loads(queues), slots, memory_mb, gpus, stopped) == (
            ["default", "gpu"],
            3,
            16384,
            1,
            None,
        )
        time.sleep(1.0)  # let Celery finish starting: it handles SIGTERM from then on
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with sqlite3.connect(path) as conn:
        [(stopped,)] = conn.execute(
            "select stopped from workers where pid = ?", (proc.pid,)
        ).fetchall()
    assert stopped is not None  # a clean stop is recorded: it serves nothing any more
