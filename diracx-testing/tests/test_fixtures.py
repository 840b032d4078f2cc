"""db_url runs a test on SQLite and PostgreSQL; marks; data_dir; free_port; the whole plugin."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from diracx.core.settings import ServiceSettings
from diracx.testing import free_port as free_port_helper


async def test_db_url_is_a_working_empty_database(
    db_url: str, request: pytest.FixtureRequest
) -> None:
    backend = request.node.callspec.params["db_url"]
    assert db_url.startswith(
        {"sqlite": "sqlite+aiosqlite:///", "postgresql": "postgresql+asyncpg://"}[backend]
    )
    engine = create_async_engine(db_url)
    try:
        async with engine.begin() as conn:
            assert engine.dialect.name == backend
            await conn.execute(text("create table t (x integer)"))
            await conn.execute(text("insert into t values (1), (2)"))
        async with engine.connect() as conn:
            assert (await conn.execute(text("select sum(x) from t"))).scalar() == 3
    finally:
        await engine.dispose()


def test_db_url_sqlite_lives_in_tmp_path(
    db_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if request.node.callspec.params["db_url"] == "sqlite":
        assert db_url == f"sqlite+aiosqlite:///{tmp_path / 'diracx.db'}"
        assert db_url.startswith("sqlite+aiosqlite:////")  # an absolute path
    assert (request.node.get_closest_marker("postgresql") is not None) == ("postgresql" in db_url)


def test_postgresql_fixtures_mark_the_test(
    postgresql_url: str, request: pytest.FixtureRequest
) -> None:
    assert request.node.get_closest_marker("postgresql") is not None


def test_data_dir_is_empty_and_exported(data_dir: Path) -> None:
    assert data_dir.is_dir()
    assert list(data_dir.iterdir()) == []
    assert os.environ["DIRACX_DATA_DIR"] == str(data_dir)
    assert ServiceSettings().data_dir == data_dir


def test_free_port_can_be_bound(free_port: int) -> None:
    for port in (free_port, free_port_helper()):
        assert 0 < port < 65536
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


INNER_TESTS = """
import json, os

def record(**kw):
    with open(os.environ["RECORD"], "a") as f:
        f.write(json.dumps(kw) + "\\n")

def test_db(db_url, request):
    record(test="db", backend=request.node.callspec.params["db_url"], url=db_url)

def test_fresh(fresh_postgresql_url, postgresql_server):
    record(test="fresh", url=fresh_postgresql_url, base=str(postgresql_server.base),
           pid=postgresql_server.process.pid)

def test_session(postgresql_url):
    record(test="session", url=postgresql_url)

def test_plain(data_dir, free_port):
    record(test="plain")

def test_z_fresh_databases_were_dropped(postgresql_server):
    names = postgresql_server.psql("select datname from pg_database").split()
    record(test="z", names=names)
    assert [n for n in names if n.startswith("diracx_") and n != "diracx_test"] == []
"""


def run_inner(
    tmp_path: Path, *args: str
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
    """Run a pytest session that uses the plugin (loaded through its entry point)."""
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(INNER_TESTS))
    record = tmp_path / "record.jsonl"
    record.unlink(missing_ok=True)
    env = {**os.environ, "RECORD": str(record)}
    env.pop("DIRACX_DATA_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "-o", "asyncio_default_fixture_loop_scope=function",
         str(tmp_path / "test_inner.py"), *args],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )  # fmt: skip
    lines = record.read_text().splitlines() if record.exists() else []
    return proc, [json.loads(line) for line in lines]


def test_not_postgresql_deselects_and_starts_no_server(tmp_path: Path) -> None:
    proc, records = run_inner(tmp_path, "-m", "not postgresql")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed, 4 deselected" in proc.stdout
    assert records == [
        {"test": "db", "backend": "sqlite", "url": records[0]["url"]},
        {"test": "plain"},
    ]


@pytest.mark.postgresql
def test_plugin_end_to_end(tmp_path: Path) -> None:
    proc, records = run_inner(tmp_path, "-v")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "6 passed" in proc.stdout
    assert "test_db[sqlite] PASSED" in proc.stdout
    assert "test_db[postgresql] PASSED" in proc.stdout
    by_test = {(r["test"], r.get("backend")): r for r in records}
    assert str(by_test["db", "postgresql"]["url"]).startswith(
        "postgresql+asyncpg://postgres@127.0.0.1:"
    )
    assert str(by_test["session", None]["url"]).endswith("/diracx_test")
    # the session is over: the server is stopped and its directory removed
    fresh = by_test["fresh", None]
    assert not Path(str(fresh["base"])).exists()
    stat = Path(f"/proc/{fresh['pid']}/stat")
    assert not stat.exists() or stat.read_text().rpartition(")")[2].split()[0] in "ZX"
