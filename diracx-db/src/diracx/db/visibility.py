"""What each VO may see of the shared store: its claims on realizations and blobs.

The store keeps each object once, whoever made it; a VO sees a realization or a blob
only once it has a claim on it (it built it, uploaded it, or imported it). Every query a
user's request makes about realizations or digests goes through these functions, so
"which of these blobs are missing" answers within the VO, and a guessed digest from
another VO looks exactly like one that does not exist.

Functions take an open connection: they run inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from diracx.db.schema import blob_vos, realization_vos

CHUNK = 500  # values per IN (...) or multi-row insert


def _chunks(items: Iterable[str]) -> Iterable[list[str]]:
    values = sorted(set(items))
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _insert_ignore(conn: Connection, table: Table) -> Any:
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


def claim_blobs(conn: Connection, vo: str, sizes: Mapping[str, int]) -> None:
    """Record that *vo* has the blobs *sizes* (digest -> size in bytes)."""
    if not sizes:
        return
    ts = datetime.now(UTC)
    rows = [{"digest": d, "vo": vo, "size": s, "created": ts} for d, s in sorted(sizes.items())]
    for start in range(0, len(rows), CHUNK):
        conn.execute(_insert_ignore(conn, blob_vos), rows[start : start + CHUNK])


def claim_realizations(conn: Connection, vo: str, rrefs: Iterable[str]) -> None:
    """Record that *vo* may see (and reuse) the realizations *rrefs*."""
    ts = datetime.now(UTC)
    for part in _chunks(rrefs):
        conn.execute(
            _insert_ignore(conn, realization_vos),
            [{"rref": r, "vo": vo, "created": ts} for r in part],
        )


def visible_blobs(conn: Connection, vo: str, digests: Iterable[str]) -> set[str]:
    """The subset of *digests* that *vo* has a claim on."""
    seen: set[str] = set()
    for part in _chunks(digests):
        rows = conn.execute(
            select(blob_vos.c.digest).where(blob_vos.c.vo == vo, blob_vos.c.digest.in_(part))
        )
        seen.update(r[0] for r in rows)
    return seen


def visible_realizations(conn: Connection, vo: str, rrefs: Iterable[str]) -> set[str]:
    """The subset of *rrefs* that *vo* may see."""
    seen: set[str] = set()
    for part in _chunks(rrefs):
        rows = conn.execute(
            select(realization_vos.c.rref).where(
                realization_vos.c.vo == vo, realization_vos.c.rref.in_(part)
            )
        )
        seen.update(r[0] for r in rows)
    return seen


def vo_store_bytes(conn: Connection, vo: str) -> int:
    """What *vo*'s blobs take in the store (its ``store_bytes`` quota counts this)."""
    total = conn.execute(select(func.sum(blob_vos.c.size)).where(blob_vos.c.vo == vo)).scalar()
    return int(total or 0)
