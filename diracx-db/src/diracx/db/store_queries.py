"""StoreDB: the reads and writes of store inspection and closures (``/api/store``).

Kept apart from PipelineDB, which holds the state changes of pipelines and jobs.
Also here: listing every blob of a store (a directory walk, or an S3 listing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, select
from sqlalchemy.dialects import postgresql, sqlite

from diracx.core.closure import ClosureRealization
from diracx.core.exceptions import ObjectNotFoundError
from diracx.core.models import RealizationInfo
from diracx.core.store import LocalStore
from diracx.db.engine import Engines
from diracx.db.os import S3Store
from diracx.db.pipelines import chunks, realization_info
from diracx.db.schema import derivations, realizations

MAX_LIST = 10_000
HEX_RE = re.compile(r"^[0-9a-f]{1,64}\Z")


def _record(r: Any) -> ClosureRealization:
    return ClosureRealization(
        rref=r.rref,
        dref=r.dref,
        name=r.name,
        body=r.body,
        output=r.output,
        context=json.loads(r.context),
        metrics=json.loads(r.metrics),
        log=r.log,
        started=r.started,
        finished=r.finished,
    )


class StoreDB:
    """Reads of realizations across derivations, and the import of closures."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines
        self._dialect = engines.dialect_name

    async def list_realizations(
        self,
        *,
        name: str | None = None,
        dref: str | None = None,
        prefix: str | None = None,
        limit: int = 100,
    ) -> list[RealizationInfo]:
        """Realizations, newest first, of the stages called *name* / of the derivation *dref*
        / whose RRef starts with *prefix* (hex digits)."""
        if prefix is not None and not HEX_RE.match(prefix):
            raise ValueError(f"not the start of an RRef: {prefix[:80]!r}")

        def tx(conn: Connection) -> list[RealizationInfo]:
            query = select(realizations, derivations.c.name).join(
                derivations, derivations.c.dref == realizations.c.dref
            )
            if name is not None:
                query = query.where(derivations.c.name == name)
            if dref is not None:
                query = query.where(realizations.c.dref == dref)
            if prefix is not None:  # hex digits only: nothing for LIKE to interpret
                query = query.where(realizations.c.rref.like(f"{prefix}%"))
            query = query.order_by(realizations.c.created.desc(), realizations.c.rref).limit(
                min(limit, MAX_LIST)
            )
            return [realization_info(r) for r in conn.execute(query)]

        return await self.engines.read(tx)

    async def closure(self, rrefs: Sequence[str]) -> list[ClosureRealization]:
        """*rrefs* and every realization they were built from, recursively (roots first).

        ObjectNotFoundError names the first realization that is not in the store.
        """

        def tx(conn: Connection) -> list[ClosureRealization]:
            found: dict[str, ClosureRealization] = {}
            needed_by: dict[str, str] = {r: "" for r in rrefs}
            frontier = list(dict.fromkeys(rrefs))
            while frontier:
                rows: dict[str, ClosureRealization] = {}
                for part in chunks(frontier):
                    query = (
                        select(realizations, derivations.c.name, derivations.c.body)
                        .join(derivations, derivations.c.dref == realizations.c.dref)
                        .where(realizations.c.rref.in_(part))
                    )
                    rows.update((r.rref, _record(r)) for r in conn.execute(query))
                for rref in frontier:
                    if rref not in rows:
                        by = needed_by[rref]
                        raise ObjectNotFoundError(
                            f"realization {rref} does not exist"
                            + (f" (an input of {by})" if by else "")
                        )
                found.update(rows)
                nxt: list[str] = []
                for rec in rows.values():
                    for inputs in rec.context.values():
                        for r in inputs:
                            if r not in found and r not in needed_by:
                                needed_by[r] = f"{rec.name} {rec.rref}"
                                nxt.append(r)
                frontier = nxt
            return list(found.values())

        return await self.engines.read(tx)

    async def realization_infos(self, rrefs: Sequence[str]) -> dict[str, RealizationInfo]:
        def tx(conn: Connection) -> dict[str, RealizationInfo]:
            out: dict[str, RealizationInfo] = {}
            for part in chunks(list(rrefs)):
                query = (
                    select(realizations, derivations.c.name)
                    .join(derivations, derivations.c.dref == realizations.c.dref)
                    .where(realizations.c.rref.in_(part))
                )
                out.update((r.rref, realization_info(r)) for r in conn.execute(query))
            return out

        return await self.engines.read(tx)

    async def existing(self, rrefs: Sequence[str]) -> set[str]:
        """Those of *rrefs* that the store has."""

        def tx(conn: Connection) -> set[str]:
            have: set[str] = set()
            for part in chunks(list(rrefs)):
                q = select(realizations.c.rref).where(realizations.c.rref.in_(part))
                have.update(r[0] for r in conn.execute(q))
            return have

        return await self.engines.read(tx)

    async def referenced(self) -> list[tuple[str, str, str | None, str]]:
        """(rref, output, log, name) of every realization: what verify checks is present."""

        def tx(conn: Connection) -> list[tuple[str, str, str | None, str]]:
            query = select(
                realizations.c.rref, realizations.c.output, realizations.c.log, derivations.c.name
            ).join(derivations, derivations.c.dref == realizations.c.dref)
            return [(r.rref, r.output, r.log, r.name) for r in conn.execute(query)]

        return await self.engines.read(tx)

    async def import_closure(self, records: Sequence[ClosureRealization]) -> list[str]:
        """Record checked realizations and their derivations in one transaction; return
        the RRefs that were new (the others were there already and are left as they are)."""
        ts = datetime.now(UTC)

        def tx(conn: Connection) -> list[str]:
            dialect = _dialect_insert(self._dialect)
            drvs = {r.dref: r for r in records}
            for part in chunks(list(drvs.values())):
                conn.execute(
                    dialect.insert(derivations).on_conflict_do_nothing(),
                    [{"dref": r.dref, "name": r.name, "body": r.body, "created": ts} for r in part],
                )
            have: set[str] = set()
            for part in chunks([r.rref for r in records]):
                q = select(realizations.c.rref).where(realizations.c.rref.in_(part))
                have.update(r[0] for r in conn.execute(q))
            new = [r for r in records if r.rref not in have]
            for part in chunks(new):
                conn.execute(
                    dialect.insert(realizations).on_conflict_do_nothing(),
                    [
                        {
                            "rref": r.rref,
                            "dref": r.dref,
                            "output": r.output,
                            "context": json.dumps(r.context, sort_keys=True),
                            "metrics": json.dumps(r.metrics, sort_keys=True),
                            "log": r.log,
                            "job_id": None,  # job ids belong to the store that built it
                            "started": r.started,
                            "finished": r.finished,
                            "created": ts,
                        }
                        for r in part
                    ],
                )
            return [r.rref for r in new]

        return await self.engines.write(tx)


def _dialect_insert(name: str) -> Any:
    return postgresql if name == "postgresql" else sqlite


def list_blobs(store: LocalStore | S3Store) -> Iterator[str]:
    """The name of every object under the store's blobs (digests, and anything else found)."""
    if isinstance(store, S3Store):
        prefix = store.key("0" * 64)[:-64]
        paginator = store.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=store.bucket, Prefix=prefix):
            for obj in page.get("Contents", []):
                yield obj["Key"][len(prefix) :]
        return
    for sub in sorted(store.blobs.iterdir()):
        if not sub.is_dir():
            yield sub.name
            continue
        for blob in sorted(sub.iterdir()):
            yield sub.name + blob.name if len(sub.name) == 2 else f"{sub.name}/{blob.name}"
