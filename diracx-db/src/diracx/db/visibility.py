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

from sqlalchemy import Connection, func, select

from diracx.db.schema import blob_vos, realization_vos
from diracx.db.sql import chunks, insert_ignore


def claim_blobs(conn: Connection, vo: str, sizes: Mapping[str, int]) -> None:
    """Record that *vo* has the blobs *sizes* (digest -> size in bytes)."""
    if not sizes:
        return
    ts = datetime.now(UTC)
    rows = [{"digest": d, "vo": vo, "size": s, "created": ts} for d, s in sorted(sizes.items())]
    for part in chunks(rows):
        conn.execute(insert_ignore(conn.dialect.name, blob_vos), list(part))


def claim_realizations(conn: Connection, vo: str, rrefs: Iterable[str]) -> None:
    """Record that *vo* may see (and reuse) the realizations *rrefs*."""
    ts = datetime.now(UTC)
    for part in chunks(sorted(set(rrefs))):
        conn.execute(
            insert_ignore(conn.dialect.name, realization_vos),
            [{"rref": r, "vo": vo, "created": ts} for r in part],
        )


def visible_blobs(conn: Connection, vo: str, digests: Iterable[str]) -> set[str]:
    """The subset of *digests* that *vo* has a claim on."""
    seen: set[str] = set()
    for part in chunks(sorted(set(digests))):
        rows = conn.execute(
            select(blob_vos.c.digest).where(blob_vos.c.vo == vo, blob_vos.c.digest.in_(part))
        )
        seen.update(r[0] for r in rows)
    return seen


def visible_realizations(conn: Connection, vo: str, rrefs: Iterable[str]) -> set[str]:
    """The subset of *rrefs* that *vo* may see."""
    seen: set[str] = set()
    for part in chunks(sorted(set(rrefs))):
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
