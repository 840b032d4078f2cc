"""StoreDB: the reads and writes of store inspection, closures and blob claims.

Kept apart from PipelineDB, which holds the state changes of pipelines and jobs.
Every read a user's request makes is within a VO: it sees the realizations and blobs
its VO has a claim on (``diracx.db.visibility``), and another VO's objects look
exactly like absent ones. Also here: listing every blob of a store (a directory walk,
or an S3 listing).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError
from sqlalchemy import Connection, Select, and_, select

from diracx.core.closure import ClosureRealization
from diracx.core.exceptions import ForbiddenError, ObjectNotFoundError
from diracx.core.models import RealizationInfo
from diracx.core.store import LocalStore
from diracx.db.engine import Engines
from diracx.db.os import NOT_FOUND, S3Store
from diracx.db.pipelines import realization_info
from diracx.db.schema import blob_vos, derivations, realization_vos, realizations
from diracx.db.sql import chunks, insert_ignore
from diracx.db.visibility import (
    claim_blobs,
    claim_realizations,
    visible_blobs,
    visible_realizations,
    vo_store_bytes,
)

MAX_LIST = 10_000
HEX_RE = re.compile(r"^[0-9a-f]{1,64}\Z")


def human_bytes(n: int) -> str:
    """``1.5 GiB``: sizes in messages."""
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


class StoreQuotaExceededError(ForbiddenError):
    """Claiming these blobs would take the VO over its ``store_bytes`` quota (a 403)."""

    def __init__(self, vo: str, used: int, needed: int, limit: int) -> None:
        super().__init__(
            f"store quota of VO {vo!r} exceeded: its blobs take {human_bytes(used)}, this "
            f"needs {human_bytes(needed)} more, and its limit is {human_bytes(limit)} "
            f"(quotas.store_bytes). Nothing was recorded: unpin what you no longer need and "
            "ask an administrator to collect garbage, or ask for a larger quota"
        )
        self.vo, self.used, self.needed, self.limit = vo, used, needed, limit


def _within(query: Select[Any], vo: str | None) -> Select[Any]:
    """*query* (on ``realizations``) restricted to what *vo* may see (None: everything)."""
    if vo is None:
        return query
    return query.join(
        realization_vos,
        and_(realization_vos.c.rref == realizations.c.rref, realization_vos.c.vo == vo),
    )


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
    """Reads of a VO's realizations across derivations, imports of closures, and the
    VO's claims on blobs (with its ``store_bytes`` quota)."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines
        self._dialect = engines.dialect_name

    async def list_realizations(
        self,
        vo: str,
        *,
        name: str | None = None,
        dref: str | None = None,
        prefix: str | None = None,
        limit: int = 100,
    ) -> list[RealizationInfo]:
        """*vo*'s realizations, newest first, of the stages called *name* / of the
        derivation *dref* / whose RRef starts with *prefix* (hex digits)."""
        if prefix is not None and not HEX_RE.match(prefix):
            raise ValueError(f"not the start of an RRef: {prefix[:80]!r}")

        def tx(conn: Connection) -> list[RealizationInfo]:
            query = _within(
                select(realizations, derivations.c.name).join(
                    derivations, derivations.c.dref == realizations.c.dref
                ),
                vo,
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

    async def realizations_of(self, vo: str, dref: str) -> list[RealizationInfo]:
        """*vo*'s realizations of the derivation *dref*, oldest first."""

        def tx(conn: Connection) -> list[RealizationInfo]:
            query = _within(
                select(realizations, derivations.c.name)
                .join(derivations, derivations.c.dref == realizations.c.dref)
                .where(realizations.c.dref == dref),
                vo,
            ).order_by(realizations.c.created, realizations.c.rref)
            return [realization_info(r) for r in conn.execute(query)]

        return await self.engines.read(tx)

    async def closure(self, vo: str, rrefs: Sequence[str]) -> list[ClosureRealization]:
        """*rrefs* and every realization they were built from, recursively (roots first).

        ObjectNotFoundError names the first realization that is not in the store, or
        that *vo* may not see (the walk stops there: the same answer either way).
        """

        def tx(conn: Connection) -> list[ClosureRealization]:
            found: dict[str, ClosureRealization] = {}
            needed_by: dict[str, str] = {r: "" for r in rrefs}
            frontier = list(dict.fromkeys(rrefs))
            while frontier:
                rows: dict[str, ClosureRealization] = {}
                for part in chunks(frontier):
                    query = _within(
                        select(realizations, derivations.c.name, derivations.c.body)
                        .join(derivations, derivations.c.dref == realizations.c.dref)
                        .where(realizations.c.rref.in_(part)),
                        vo,
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

    async def realization_infos(self, vo: str, rrefs: Sequence[str]) -> dict[str, RealizationInfo]:
        """Those of *rrefs* that *vo* may see, by RRef."""

        def tx(conn: Connection) -> dict[str, RealizationInfo]:
            out: dict[str, RealizationInfo] = {}
            for part in chunks(sorted(set(rrefs))):
                query = _within(
                    select(realizations, derivations.c.name)
                    .join(derivations, derivations.c.dref == realizations.c.dref)
                    .where(realizations.c.rref.in_(part)),
                    vo,
                )
                out.update((r.rref, realization_info(r)) for r in conn.execute(query))
            return out

        return await self.engines.read(tx)

    async def visible(self, vo: str, rrefs: Sequence[str]) -> set[str]:
        """Those of *rrefs* that *vo* may see."""
        return await self.engines.read(visible_realizations, vo, rrefs)

    async def referenced(self, vo: str | None) -> list[tuple[str, str, str | None, str]]:
        """(rref, output, log, name) of every realization *vo* may see (None: of the
        whole store): what sizes adds up and verify checks is present."""

        def tx(conn: Connection) -> list[tuple[str, str, str | None, str]]:
            query = _within(
                select(
                    realizations.c.rref,
                    realizations.c.output,
                    realizations.c.log,
                    derivations.c.name,
                ).join(derivations, derivations.c.dref == realizations.c.dref),
                vo,
            )
            return [(r.rref, r.output, r.log, r.name) for r in conn.execute(query)]

        return await self.engines.read(tx)

    async def import_closure(
        self,
        vo: str,
        records: Sequence[ClosureRealization],
        blobs: dict[str, int],
        limit: int | None,
    ) -> list[str]:
        """Record checked realizations and their derivations, and *vo*'s claims on them
        and on their *blobs* (digest -> size), in one transaction; return the RRefs that
        were new (the others were there already and are left as they are)."""
        ts = datetime.now(UTC)

        def tx(conn: Connection) -> list[str]:
            self._claim_blobs(conn, vo, blobs, limit)
            drvs = {r.dref: r for r in records}
            for part in chunks(list(drvs.values())):
                conn.execute(
                    insert_ignore(self._dialect, derivations),
                    [{"dref": r.dref, "name": r.name, "body": r.body, "created": ts} for r in part],
                )
            have: set[str] = set()
            for part in chunks([r.rref for r in records]):
                q = select(realizations.c.rref).where(realizations.c.rref.in_(part))
                have.update(r[0] for r in conn.execute(q))
            new = [r for r in records if r.rref not in have]
            for part in chunks(new):
                conn.execute(
                    insert_ignore(self._dialect, realizations),
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
            claim_realizations(conn, vo, [r.rref for r in records])
            return [r.rref for r in new]

        return await self.engines.write(tx)

    # -- blobs -------------------------------------------------------------------------

    async def visible_blobs(self, vo: str, digests: Sequence[str]) -> set[str]:
        """Those of *digests* that *vo* has a claim on."""
        return await self.engines.read(visible_blobs, vo, digests)

    async def claimed_blobs(self, vo: str) -> dict[str, int]:
        """Every blob *vo* has a claim on, with the size it counts."""

        def tx(conn: Connection) -> dict[str, int]:
            rows = conn.execute(
                select(blob_vos.c.digest, blob_vos.c.size).where(blob_vos.c.vo == vo)
            )
            return {r.digest: int(r.size) for r in rows}

        return await self.engines.read(tx)

    async def store_bytes(self, vo: str) -> int:
        """What *vo*'s blobs take (its ``store_bytes`` quota counts this)."""
        return await self.engines.read(vo_store_bytes, vo)

    async def claim_blobs(self, vo: str, sizes: dict[str, int], limit: int | None) -> None:
        """Record *vo*'s claims on *sizes* (digest -> size, verified by the caller);
        StoreQuotaExceededError (nothing recorded) if the new ones exceed *limit*."""
        await self.engines.write(self._claim_blobs, vo, sizes, limit)

    @staticmethod
    def _claim_blobs(conn: Connection, vo: str, sizes: dict[str, int], limit: int | None) -> None:
        have = visible_blobs(conn, vo, sizes)
        new = {d: s for d, s in sizes.items() if d not in have}
        check_quota(conn, vo, sum(new.values()), limit)
        claim_blobs(conn, vo, new)


def check_quota(conn: Connection, vo: str, needed: int, limit: int | None) -> None:
    """StoreQuotaExceededError if *needed* more bytes would take *vo* over *limit*."""
    if limit is None or needed == 0:
        return
    used = vo_store_bytes(conn, vo)
    if used + needed > limit:
        raise StoreQuotaExceededError(vo, used, needed, limit)


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


def upload_pending(store: S3Store, digest: str, upload_id: str) -> bool:
    """Whether the upload *upload_id* of *digest* is in progress or staged, so that
    completing it hashes bytes a client sent. (Completing an upload that is not there
    answers with the blob if the store has it: a retry. That may not give a VO a claim
    on a blob it never sent.) Raises InvalidUploadError for a malformed id."""
    key, s3_id = store._parse_upload_id(digest, upload_id)

    def found(call: Any, **kwargs: Any) -> bool:
        try:
            call(Bucket=store.bucket, Key=key, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code"))
            if code in NOT_FOUND or code == "NoSuchUpload":
                return False
            raise
        return True

    in_progress = s3_id is not None and found(store.client.list_parts, UploadId=s3_id, MaxParts=1)
    return in_progress or found(store.client.head_object)  # staged (completed parts)
