"""Apply the Alembic migrations (``dirac db upgrade`` and the embedded engine's start)."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import make_url

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions; a test checks it matches Alembic's head.
HEAD = "0007"


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Alembic runs synchronously: use the sync driver of the same database.
    sync_url = make_url(url)
    if sync_url.drivername == "sqlite+aiosqlite":
        sync_url = sync_url.set(drivername="sqlite")
    elif sync_url.get_backend_name() == "postgresql":
        sync_url = sync_url.set(drivername="postgresql+psycopg")
    cfg.attributes["sqlalchemy_url"] = sync_url
    return cfg


def sqlite_is_current(url: str) -> bool:
    """True if *url* is a SQLite file already at HEAD (checked without importing Alembic,
    which would add a quarter of a second to every start of the embedded engine)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return False
    if not Path(parsed.database).exists():
        return False
    try:
        with sqlite3.connect(f"file:{parsed.database}?mode=ro", uri=True) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return False
    return row is not None and row[0] == HEAD


def current_revision(url: str) -> str | None:
    """The revision the database at *url* is at; None if it was never migrated."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import DBAPIError

    engine = create_engine(alembic_config(url).attributes["sqlalchemy_url"])
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except DBAPIError:  # no table yet, or no database yet
        return None
    finally:
        engine.dispose()


class DatabaseUnreachableError(RuntimeError):
    """The database cannot be reached (the message says where and why, without password)."""


def describe(url: str) -> str:
    """*url* safe to print: the password hidden."""
    return make_url(url).render_as_string(hide_password=True)


def database_revision(url: str) -> str | None:
    """The revision the database at *url* is at, None if it was never migrated; raises
    DatabaseUnreachableError if it cannot be reached (unlike :func:`current_revision`)."""
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.exc import DBAPIError

    parsed = make_url(url)
    sqlite_file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if sqlite_file and not Path(sqlite_file).exists():
        return None  # a new file: the upgrade creates it
    sync_url = alembic_config(url).attributes["sqlalchemy_url"]
    # an unreachable host is an error after a while, not a hang
    connect_args = {"connect_timeout": 10} if sync_url.get_backend_name() == "postgresql" else {}
    engine = create_engine(sync_url, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("alembic_version"):
                return None
            revision: str | None = conn.execute(
                text("SELECT version_num FROM alembic_version")
            ).scalar()
            return revision
    except DBAPIError as exc:
        lines = str(exc.orig or exc).strip().splitlines()
        reason = lines[0] if lines else type(exc.orig or exc).__name__
        raise DatabaseUnreachableError(
            f"cannot reach the database {describe(url)}: {reason}"
        ) from None
    finally:
        engine.dispose()


def wait_for_schema(url: str, timeout: float = 120.0) -> None:
    """Wait until the database is migrated to HEAD (a worker started with its service)."""
    deadline = time.monotonic() + timeout
    while (revision := current_revision(url)) != HEAD:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"the database is at revision {revision or 'none'}, this DiracX needs {HEAD}: "
                "run `dirac server` (it migrates on start) or the migrations first"
            )
        time.sleep(0.5)


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at *url* to *revision* (creating it from nothing if needed)."""
    if revision == "head" and sqlite_is_current(url):
        return
    parsed = make_url(url)
    sqlite_file = parsed.database if parsed.get_backend_name() == "sqlite" else None
    if sqlite_file:
        Path(sqlite_file).parent.mkdir(parents=True, exist_ok=True)
    from alembic import command

    command.upgrade(alembic_config(url), revision)
    if sqlite_file:
        # WAL from creation on (it persists): see engine.use_wal
        from diracx.db.engine import use_wal

        with closing(sqlite3.connect(sqlite_file, timeout=30)) as conn:
            use_wal(conn.cursor())
