"""Small SQL helpers shared by the DB classes (SQLite and PostgreSQL alike)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite

# SQLite caps bound parameters per statement; IN lists are sent in chunks of this size.
CHUNK = 500


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def insert_ignore(dialect_name: str, table: Table) -> Any:
    """``INSERT ... ON CONFLICT DO NOTHING`` into *table*, for the named dialect."""
    dialect = postgresql if dialect_name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()
