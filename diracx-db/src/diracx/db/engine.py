"""Database engines: SQLite (WAL) for the embedded default, PostgreSQL when scaled out.

PipelineDB writes its transactions as plain synchronous functions of a
``Connection``; ``Engines`` runs each one whole, in one transaction:

- SQLite: on a thread, with the synchronous driver. One hop to the thread per
  transaction, not one per statement as with an async SQLite driver, and all
  writes of a process go through one connection on one thread (SQLite has one
  writer at a time: waiting here is cheaper than in SQLite's busy handler).
- PostgreSQL: with asyncpg, through ``AsyncConnection.run_sync``, on a pool of
  connections per process (``db_pool_size`` kept open, ``db_max_overflow`` more at
  peaks, each replaced after ``db_pool_recycle`` seconds, checked before use).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

T = TypeVar("T")
Transaction = Callable[..., T]


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def async_url(url: str) -> URL:
    """*url* with the asyncio driver DiracX uses for its database (``postgresql://`` and
    ``postgresql+psycopg://`` mean asyncpg; SQLite URLs are left as they are)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "postgresql" and parsed.drivername != "postgresql+asyncpg":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    return parsed


def use_wal(cursor: Any) -> None:
    """Put the SQLite database in WAL mode (it stays so: ``upgrade`` sets it at creation).

    Switching needs the database to itself and SQLite answers "database is locked" at
    once instead of waiting, so connections that open a database not yet in WAL mode
    together retry until one of them has switched it.
    """
    deadline = time.monotonic() + 30
    while cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return  # in WAL mode now, or one that cannot be (in memory): left as it is
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def _sqlite_engine(url: str, *, writer: bool) -> Engine:
    sync_url = make_url(url).set(drivername="sqlite")
    engine = create_engine(
        sync_url,
        connect_args={"timeout": 30, "check_same_thread": False},
        # all writes of a process share one connection (on one thread)
        **({"pool_size": 1, "max_overflow": 0} if writer else {}),
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transactions into our own hands (see _on_begin) and tune for one writer.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        use_wal(cursor)
        cursor.execute("PRAGMA synchronous=NORMAL")  # durable at checkpoints; safe with WAL
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Writers take the lock up front: a deferred transaction that upgrades to a
        # write after another process committed fails at once with "database is locked".
        conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")

    return engine


class Engines:
    """Runs PipelineDB's transactions on the database at *url*."""

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = 10,
        max_overflow: int = 20,
        pool_recycle: int = 1800,
    ) -> None:
        self.url = url
        self.sqlite = is_sqlite(url)
        self.dialect_name: str
        if self.sqlite:
            self._writer = _sqlite_engine(url, writer=True)
            self._reader = _sqlite_engine(url, writer=False)
            self._write_thread = ThreadPoolExecutor(1, thread_name_prefix="diracx-db-writer")
            self.dialect_name = "sqlite"
        else:
            self._async: AsyncEngine = create_async_engine(
                async_url(url),
                pool_size=pool_size,
                max_overflow=max_overflow,
                pool_recycle=pool_recycle,
                # a connection the server closed (restart, idle timeout) is replaced, not used
                pool_pre_ping=True,
            )
            self.dialect_name = self._async.dialect.name

    async def write(self, tx: Transaction[T], *args: Any) -> T:
        """Run ``tx(connection, *args)`` in a write transaction; commit, or roll back on error."""
        if self.sqlite:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._write_thread, _in_transaction, self._writer, tx, args
            )
        async with self._async.begin() as conn:
            return await conn.run_sync(tx, *args)

    async def read(self, tx: Transaction[T], *args: Any) -> T:
        """Run ``tx(connection, *args)`` on a consistent snapshot (a read transaction)."""
        if self.sqlite:
            return await asyncio.to_thread(_in_transaction, self._reader, tx, args)
        async with self._async.connect() as conn:
            return await conn.run_sync(tx, *args)

    async def dispose(self) -> None:
        if self.sqlite:
            self._write_thread.shutdown(wait=True)
            self._writer.dispose()
            self._reader.dispose()
        else:
            await self._async.dispose()


def _in_transaction(engine: Engine, tx: Transaction[T], args: tuple[Any, ...]) -> T:
    conn: Connection
    with engine.begin() as conn:
        return tx(conn, *args)
