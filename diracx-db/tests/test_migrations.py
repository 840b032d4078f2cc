"""Migrations: they build the schema on every backend and HEAD names the newest one."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.script import ScriptDirectory

from diracx.db.engine import use_wal
from diracx.db.migrate import (
    HEAD,
    alembic_config,
    current_revision,
    sqlite_is_current,
    upgrade,
    wait_for_schema,
)
from diracx.db.schema import metadata


def test_head_constant_matches_alembic():
    script = ScriptDirectory.from_config(alembic_config("sqlite:///unused.db"))
    assert script.get_current_head() == HEAD


def test_upgrade_creates_every_table(db_url):
    upgrade(db_url)
    sync_url = alembic_config(db_url).attributes["sqlalchemy_url"]
    engine = sa.create_engine(sync_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert set(metadata.tables) <= tables
    assert "alembic_version" in tables


def test_upgrade_twice_is_harmless(db_url):
    upgrade(db_url)
    upgrade(db_url)


def test_sqlite_fast_path_only_when_current(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'd.db'}"
    assert not sqlite_is_current(url)  # no file yet
    upgrade(url)
    assert sqlite_is_current(url)
    assert not sqlite_is_current("postgresql+asyncpg://u@127.0.0.1/x")


def test_current_revision_and_wait_for_schema(db_url):
    assert current_revision(db_url) is None
    upgrade(db_url)
    assert current_revision(db_url) == HEAD
    wait_for_schema(db_url, timeout=1)  # returns at once


def test_wait_for_schema_says_what_to_do(tmp_path):
    url = f"sqlite:///{tmp_path / 'never-migrated.db'}"
    with pytest.raises(RuntimeError, match="migrat"):
        wait_for_schema(url, timeout=0.6)


def test_migrations_match_the_schema(db_url):
    """The tables the migrations build are the ones schema.py declares (nothing missing,
    nothing extra): a column added to one and not the other fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    upgrade(db_url)
    engine = sa.create_engine(alembic_config(db_url).attributes["sqlalchemy_url"])
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diff == []


def test_upgrade_from_0001_keeps_rows(db_url):
    from datetime import UTC, datetime

    from alembic import command

    config = alembic_config(db_url)
    command.upgrade(config, "0001")
    engine = sa.create_engine(config.attributes["sqlalchemy_url"])
    ts = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO workers (id, hostname, pid, started, last_seen) "
                    "VALUES ('w', 'h', 1, :ts, :ts)"
                ),
                {"ts": ts},
            )
        upgrade(db_url)
        with engine.connect() as conn:
            row = conn.execute(sa.text("SELECT queues, slots FROM workers")).one()
    finally:
        engine.dispose()
    assert row == ('["default"]', 1)


def test_upgrade_to_vos_gives_the_local_vo_its_blobs(db_url, tmp_path):
    """Migration 0006 gives old realizations to the local VO; ``upgrade_data`` then gives
    it the blobs of their outputs and logs, so they can still be downloaded."""
    from datetime import UTC, datetime

    from alembic import command

    from diracx.core.settings import ServiceSettings
    from diracx.core.store import LocalStore
    from diracx.core.tree import Tree, TreeEntry
    from diracx.db.data_upgrades import upgrade_data

    store = LocalStore(tmp_path / "store")
    blob = store.put_bytes(b"a result")
    log = store.put_bytes(b"the build's log")
    tree = Tree({"result.txt": TreeEntry("file", blob, 8)})
    output = store.put_bytes(tree.manifest_bytes())
    config = alembic_config(db_url)
    command.upgrade(config, "0005")
    engine = sa.create_engine(config.attributes["sqlalchemy_url"])
    ts = datetime.now(UTC)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO derivations (dref, name, body, created) "
                    "VALUES (:d, 'old', '{}', :ts)"
                ),
                {"d": "d" * 64, "ts": ts},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO realizations (rref, dref, output, context, metrics, log, created)"
                    " VALUES (:r, :d, :o, '{}', '{}', :log, :ts)"
                ),
                {"r": "r" * 64, "d": "d" * 64, "o": output, "log": log, "ts": ts},
            )
        upgrade(db_url)
        settings = ServiceSettings(db_url=db_url, store_path=tmp_path / "store")
        assert upgrade_data(settings, "0005") == [
            "gave the local VO its claims on 3 blobs of its realizations"
        ]
        assert upgrade_data(settings, "0006") == []  # already there: nothing to do
        with engine.connect() as conn:
            claims = conn.execute(sa.text("SELECT vo, digest FROM blob_vos")).all()
    finally:
        engine.dispose()
    assert sorted(claims) == sorted(("local", d) for d in (blob, log, output))


def test_sqlite_databases_are_in_wal_mode_from_creation(tmp_path):
    path = tmp_path / "diracx.db"
    upgrade(f"sqlite:///{path}")
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def _open_and_write(path: Path, start: threading.Barrier, errors: list[BaseException]) -> None:
    try:
        with closing(sqlite3.connect(path, timeout=30, isolation_level=None)) as conn:
            start.wait()
            use_wal(conn.cursor())
            conn.execute("INSERT INTO t VALUES (1)")
    except BaseException as error:
        errors.append(error)


def test_connections_opening_a_database_together_all_switch_it_to_wal(tmp_path):
    """SQLite refuses a switch to WAL at once while another connection has the file open
    (no busy wait): connections opening one not yet in WAL mode together still all work."""
    for attempt in range(20):
        path = tmp_path / f"{attempt}.db"
        with closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE t (x)")
        start = threading.Barrier(8)
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=_open_and_write, args=(path, start, errors)) for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        with closing(sqlite3.connect(path)) as conn:
            assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 8


def test_a_database_that_cannot_use_wal_is_left_as_it_is() -> None:
    with closing(sqlite3.connect(":memory:")) as conn:
        use_wal(conn.cursor())  # returns: an in-memory database has no WAL
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "memory"
