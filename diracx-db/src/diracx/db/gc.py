"""Pins and garbage collection of the store (the plan itself is ``diracx.core.gc``).

A collection runs in three steps:

1. Mark, on a snapshot: gather the realizations, the roots (pins, pipelines younger
   than the retention window, live jobs' inputs) and, from the store, every blob
   with its size and time; expand trees into the blobs they name; plan.
2. Sweep the rows in one write transaction that first blocks new pipelines, job
   changes and pins (SQLite: the one writer; PostgreSQL: ``LOCK TABLE ... IN SHARE
   MODE``) and computes the roots again: a realization that became reachable since
   step 1 (a new pipeline reused it, it was pinned) stays.
3. Sweep the blobs: the rows are read again, and a planned blob that any remaining
   realization, live job or young pipeline refers to stays. Each blob is renamed
   aside first, then its time checked again: a writer that refreshed it (found it
   stored, ``LocalStore.refresh``) before the rename is seen and the blob put back;
   one that comes after finds it gone and writes it again.

A blob written or refreshed within the grace period is never taken, so a build
that ingests outputs while a collection runs (its realization is recorded only
when it finishes) keeps them, and so does a client told it need not upload a blob.

The store is shared by every VO, so a collection is global: its roots are every
VO's pins and pipelines, and it removes the VOs' claims on what it removes (a
realization's ``realization_vos`` rows with it, a blob's ``blob_vos`` rows once the
blob is gone). Pins are per VO: a name means something in one VO only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, insert, select

from diracx.core.builders import STACK_FILE
from diracx.core.canonical import is_digest
from diracx.core.exceptions import (
    ConflictError,
    DiracxError,
    ForbiddenError,
    ObjectNotFoundError,
)
from diracx.core.gc import (
    BlobFacts,
    GCRealization,
    GCReport,
    GCRequest,
    PinInfo,
    RealizationFacts,
    check_pin_name,
    closure,
    plan,
)
from diracx.core.status import LIVE_STATUSES
from diracx.core.store import LocalStore
from diracx.core.tree import Tree
from diracx.db.os import S3Store
from diracx.db.pipelines import PipelineDB
from diracx.db.schema import (
    blob_vos,
    derivations,
    jobs,
    pins,
    pipeline_stages,
    pipelines,
    realization_vos,
    realizations,
)
from diracx.db.sql import CHUNK, chunks
from diracx.db.visibility import claim_blobs, visible_blobs, visible_realizations

Store = LocalStore | S3Store


# --------------------------------------------------------------------------- pins


def _pin_info(row: Any) -> PinInfo:
    return PinInfo(
        name=row.name,
        rref=row.rref,
        stage=row.stage,
        output=row.output,
        owner=row.owner,
        created=row.created,
    )


def _pin_query() -> Any:
    return (
        select(
            pins.c.name,
            pins.c.rref,
            pins.c.owner,
            pins.c.created,
            realizations.c.output,
            derivations.c.name.label("stage"),
        )
        .join(realizations, realizations.c.rref == pins.c.rref)
        .join(derivations, derivations.c.dref == realizations.c.dref)
    )


def _pin_where(vo: str, name: str) -> Any:
    return (pins.c.vo == vo) & (pins.c.name == name)


def _may_replace(row: Any, user: str, admin: bool, doing: str) -> None:
    """Only its owner, or an administrator of the VO, may remove or move a pin."""
    if row.owner != user and not admin:
        raise ForbiddenError(
            f"pin {row.name!r} belongs to {row.owner!r}: only they or an administrator of "
            f"the VO (VOAdmin) may {doing} it"
        )


async def pin(
    db: PipelineDB, vo: str, name: str, rref: str, owner: str, *, admin: bool = False
) -> PinInfo:
    """Name *rref* in *vo* (moving the name if it named another realization: its owner's
    or, with *admin*, anyone's). The realization must be one *vo* may see."""
    try:
        check_pin_name(name)
    except ValueError as exc:
        raise DiracxError(str(exc)) from None
    ts = datetime.now(UTC)

    def tx(conn: Connection) -> Any:
        if not visible_realizations(conn, vo, [rref]):
            raise ObjectNotFoundError(f"realization {rref} does not exist: nothing to pin")
        old = conn.execute(select(pins).where(_pin_where(vo, name))).first()
        if old is not None and old.rref != rref:
            _may_replace(old, owner, admin, "move")
            conn.execute(delete(pins).where(_pin_where(vo, name)))
        if old is None or old.rref != rref:  # pinned again as it was: left as it is
            conn.execute(insert(pins).values(vo=vo, name=name, rref=rref, owner=owner, created=ts))
        return _pin_info(conn.execute(_pin_query().where(_pin_where(vo, name))).one())

    result: PinInfo = await db.engines.write(tx)
    return result


async def unpin(db: PipelineDB, vo: str, name: str, user: str, *, admin: bool = False) -> PinInfo:
    """Remove *vo*'s pin *name* (*user*'s own, or with *admin* anyone's); return what it
    named."""

    def tx(conn: Connection) -> Any:
        row = conn.execute(_pin_query().where(_pin_where(vo, name))).first()
        if row is None:
            raise ObjectNotFoundError(f"there is no pin named {name!r} (see `dirac store pins`)")
        _may_replace(row, user, admin, "remove")
        conn.execute(delete(pins).where(_pin_where(vo, name)))
        return _pin_info(row)

    result: PinInfo = await db.engines.write(tx)
    return result


async def list_pins(db: PipelineDB, vo: str) -> list[PinInfo]:
    """*vo*'s pins, by name."""

    def tx(conn: Connection) -> Any:
        query = _pin_query().where(pins.c.vo == vo).order_by(pins.c.name)
        return [_pin_info(r) for r in conn.execute(query)]

    result: list[PinInfo] = await db.engines.read(tx)
    return result


# --------------------------------------------------------------------------- the rows


def body_refs(body: str) -> tuple[set[str], set[str]]:
    """(input DRefs, trees) a stored derivation body names: its tree inputs and, for a
    Python builder, its source tree."""
    doc = json.loads(body)
    drvs: set[str] = set()
    trees: set[str] = set()
    for value in (doc.get("inputs") or {}).values():
        if isinstance(value, dict):
            if isinstance(value.get("drv"), str):
                drvs.add(value["drv"])
            if isinstance(value.get("tree"), str):
                trees.add(value["tree"])
    builder = doc.get("builder") or {}
    if builder.get("executor") == "python" and isinstance(builder.get("source"), str):
        trees.add(builder["source"])
    return drvs, trees


@dataclass
class Rows:
    """What the database says: every realization, the roots, what roots need directly."""

    rows: dict[str, Any] = field(default_factory=dict)  # rref -> realization row
    bodies: dict[str, str] = field(default_factory=dict)  # dref -> body
    roots: set[str] = field(default_factory=set)
    trees: set[str] = field(default_factory=set)  # trees young pipelines and live jobs need
    logs: set[str] = field(default_factory=set)  # logs of young pipelines' and live jobs' jobs

    def inputs(self, rref: str) -> frozenset[str]:
        context = json.loads(self.rows[rref].context)
        return frozenset(r for rs in context.values() for r in rs)


def read_rows(conn: Connection, keep_since: datetime) -> Rows:
    """The facts of a collection, read on *conn* (pipelines created since *keep_since*
    are young)."""
    found = Rows()
    r: Any
    for r in conn.execute(
        select(
            realizations.c.rref,
            realizations.c.dref,
            realizations.c.output,
            realizations.c.context,
            realizations.c.log,
            realizations.c.created,
            derivations.c.name,
            derivations.c.body,
        ).join(derivations, derivations.c.dref == realizations.c.dref)
    ):
        found.rows[r.rref] = r
        found.bodies[r.dref] = r.body
    by_dref: dict[str, list[str]] = {}
    for rref, r in found.rows.items():
        by_dref.setdefault(r.dref, []).append(rref)

    found.roots.update(r[0] for r in conn.execute(select(pins.c.rref)))

    def need(drefs: Iterable[str]) -> None:
        """Every realization of *drefs* is a root."""
        for d in drefs:
            found.roots.update(by_dref.get(d, ()))

    # pipelines younger than the window: everything their derivations realized
    young = (
        select(
            pipeline_stages.c.dref,
            pipeline_stages.c.cached_rref,
            jobs.c.rref,
            jobs.c.log,
            derivations.c.body,
        )
        .join(pipelines, pipelines.c.id == pipeline_stages.c.pipeline_id)
        .join(derivations, derivations.c.dref == pipeline_stages.c.dref)
        .outerjoin(jobs, jobs.c.id == pipeline_stages.c.job_id)
        .where(pipelines.c.created >= keep_since)
    )
    for r in conn.execute(young):
        need([r.dref])
        found.roots.update(x for x in (r.cached_rref, r.rref) if x)
        if r.log:
            found.logs.add(r.log)
        found.trees |= body_refs(r.body)[1]
    # live jobs: whatever realization of an input they may take, their trees and sources
    live = (
        select(jobs.c.log, derivations.c.body)
        .join(derivations, derivations.c.dref == jobs.c.dref)
        .where(jobs.c.status.in_([s.value for s in LIVE_STATUSES]))
    )
    for r in conn.execute(live):
        drvs, trees = body_refs(r.body)
        need(drvs)
        found.trees |= trees
        if r.log:
            found.logs.add(r.log)
    return found


# --------------------------------------------------------------------------- the store


def list_blobs(store: Store) -> dict[str, BlobFacts]:
    """Every blob of the store with its size and modification time."""
    found: dict[str, BlobFacts] = {}
    if isinstance(store, LocalStore):
        with os.scandir(store.blobs) as top:
            for sub in top:
                if len(sub.name) != 2 or not sub.is_dir(follow_symlinks=False):
                    continue
                with os.scandir(sub.path) as files:
                    for f in files:
                        digest = sub.name + f.name
                        if is_digest(digest) and f.is_file(follow_symlinks=False):
                            st = f.stat(follow_symlinks=False)
                            found[digest] = BlobFacts(st.st_size, st.st_mtime)
        return found
    prefix = store._key("blobs/")
    for page in store.client.get_paginator("list_objects_v2").paginate(
        Bucket=store.bucket, Prefix=prefix
    ):
        for obj in page.get("Contents", []):
            digest = obj["Key"][len(prefix) :]
            if is_digest(digest):
                found[digest] = BlobFacts(int(obj["Size"]), obj["LastModified"].timestamp())
    return found


def remove_blob(store: Store, digest: str, cutoff: float) -> bool:
    """Remove the blob if it was not modified after *cutoff*; whether it was removed."""
    if isinstance(store, LocalStore):
        path = store.path(digest)
        aside = store.tmp / f"gc-{digest}"
        try:
            if path.stat().st_mtime > cutoff:
                return False
            os.replace(path, aside)
        except FileNotFoundError:
            return False
        # refreshed between the stat and the rename: put it back (rename keeps the time)
        if aside.stat().st_mtime > cutoff:
            with contextlib.suppress(FileExistsError):  # written again meanwhile: same bytes
                os.link(aside, path)
            aside.unlink()
            return False
        aside.unlink()
        return True
    # S3: no rename; the time is checked just before the delete. S3Store does not refresh
    # the time of a blob it finds already stored: only the grace period protects it.
    head = store._head(digest)
    if head is None or head["LastModified"].timestamp() > cutoff:
        return False
    store.client.delete_object(Bucket=store.bucket, Key=store.key(digest))
    return True


def remove_blobs(store: Store, digests: Iterable[str], cutoff: float) -> list[str]:
    """Remove each blob not modified after *cutoff*; return those removed."""
    return [d for d in digests if remove_blob(store, d, cutoff)]


class TreeBlobs:
    """The blobs a tree names (itself, its files, the layers of its ``stack.json``),
    read from the store once per tree."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.known: dict[str, frozenset[str]] = {}
        self.unreadable: dict[str, str] = {}  # tree -> why its manifest could not be read

    def __call__(self, digest: str) -> frozenset[str]:
        known = self.known.get(digest)
        if known is not None:
            return known
        blobs = {digest}
        try:
            tree = Tree.from_bytes(self.store.read_bytes(digest))
        except (DiracxError, ValueError) as exc:  # gone, corrupt, not a tree: itself only
            self.unreadable[digest] = str(exc)
        else:
            blobs |= tree.blob_digests()
            stack = tree.entries.get(STACK_FILE)
            if stack is not None and stack.digest is not None:
                blobs |= self._layers(stack.digest)
        self.known[digest] = frozenset(blobs)
        return self.known[digest]

    def check(self, kept: Iterable[str]) -> None:
        """Refuse to go on if a tree that stays cannot be read: the blobs it names are
        unknown, and would be taken for unreferenced ones."""
        for digest in kept:
            if digest in self.unreadable:
                raise ConflictError(
                    f"cannot collect garbage: tree {digest}, which must stay, cannot be "
                    f"read ({self.unreadable[digest]}), so the blobs it names are unknown; "
                    "run `dirac store verify`"
                )

    def _layers(self, digest: str) -> set[str]:
        try:
            doc = json.loads(self.store.read_bytes(digest))
            return {str(d["digest"]) for d in doc if is_digest(str(d["digest"]))}
        except (DiracxError, ValueError, KeyError, TypeError):
            return set()


def realization_facts(rows: Rows, trees: TreeBlobs) -> dict[str, RealizationFacts]:
    facts: dict[str, RealizationFacts] = {}
    for rref, r in rows.rows.items():
        blobs = set(trees(r.output))
        if r.log:
            blobs.add(r.log)
        for t in body_refs(rows.bodies[r.dref])[1]:
            blobs |= trees(t)
        facts[rref] = RealizationFacts(
            rref=rref,
            stage=r.name,
            created=r.created,
            inputs=rows.inputs(rref),
            blobs=frozenset(blobs),
        )
    return facts


def protected_blobs(rows: Rows, trees: TreeBlobs) -> set[str]:
    blobs = set(rows.logs)
    for t in rows.trees:
        blobs |= trees(t)
    return blobs


# --------------------------------------------------------------------------- claims


async def backfill_blob_claims(db: PipelineDB, store: Store) -> int:
    """Give each VO a claim on every blob of the realizations it may see that the store
    has (output trees expanded, logs, the trees of their derivations); return how many
    claims were added. Realizations made before VOs existed (migration 0006 gave them to
    the local VO) have no claims on their blobs: until this runs, their outputs cannot be
    downloaded. Run it once after that migration; running it again adds nothing."""
    rows = await db.engines.read(read_rows, datetime.now(UTC))
    facts = await asyncio.to_thread(realization_facts, rows, TreeBlobs(store))
    present = await asyncio.to_thread(list_blobs, store)

    def tx(conn: Connection) -> int:
        wanted: dict[str, set[str]] = {}
        for rref, vo in conn.execute(select(realization_vos.c.rref, realization_vos.c.vo)):
            if rref in facts:
                wanted.setdefault(vo, set()).update(facts[rref].blobs)
        added = 0
        for vo, blobs in sorted(wanted.items()):
            have = visible_blobs(conn, vo, blobs)
            new = {d: present[d].size for d in blobs - have if d in present}
            claim_blobs(conn, vo, new)  # what the VO built: no quota applies
            added += len(new)
        return added

    result: int = await db.engines.write(tx)
    return result


# --------------------------------------------------------------------------- collect


async def collect(
    db: PipelineDB, store: Store, request: GCRequest, *, now: datetime | None = None
) -> GCReport:
    """Remove (or, with ``dry_run``, list) what no root reaches; see the module's text."""
    started = datetime.now(UTC)
    now = now or started
    keep_since = now - timedelta(days=request.keep_days)
    row_cutoff = now - timedelta(seconds=request.grace_seconds)
    blob_cutoff = row_cutoff.timestamp()
    trees = TreeBlobs(store)

    rows = await db.engines.read(read_rows, keep_since)
    blobs_now = await asyncio.to_thread(list_blobs, store)
    facts = await asyncio.to_thread(realization_facts, rows, trees)
    protected = await asyncio.to_thread(protected_blobs, rows, trees)
    planned = plan(
        facts,
        rows.roots,
        protected,
        blobs_now,
        blob_cutoff=blob_cutoff,
        row_cutoff=row_cutoff,
        target_size=request.target_size,
    )
    removed_rows = planned.realizations
    removed_blobs = planned.blobs
    gone_rows = {f.rref for f in removed_rows}
    trees.check(protected.union(*(f.blobs for r, f in facts.items() if r not in gone_rows)))
    if not request.dry_run and (removed_rows or removed_blobs):
        doomed = [f.rref for f in removed_rows]

        def sweep(conn: Connection) -> list[str]:
            if db.engines.dialect_name == "postgresql":
                # no new pipeline, job change or pin until the rows are gone
                conn.exec_driver_sql("LOCK TABLE pipelines, jobs, pins IN SHARE MODE")
            again = read_rows(conn, keep_since)
            young = [r for r, row in again.rows.items() if row.created > row_cutoff]
            kept = closure([*again.roots, *young], {r: again.inputs(r) for r in again.rows})
            gone = [r for r in doomed if r in again.rows and r not in kept]
            for part in chunks(gone, CHUNK):
                conn.execute(delete(realization_vos).where(realization_vos.c.rref.in_(part)))
                conn.execute(delete(realizations).where(realizations.c.rref.in_(part)))
            return gone

        gone = set(await db.engines.write(sweep))
        removed_rows = [f for f in removed_rows if f.rref in gone]
        # whatever still refers to a planned blob keeps it
        after = await db.engines.read(read_rows, keep_since)
        referenced = await asyncio.to_thread(protected_blobs, after, trees)
        for f in (await asyncio.to_thread(realization_facts, after, trees)).values():
            referenced |= f.blobs
        trees.check(referenced)
        candidates = [b for b in removed_blobs if b not in referenced]
        removed_blobs = await asyncio.to_thread(remove_blobs, store, candidates, blob_cutoff)
        await db.engines.write(drop_blob_claims, removed_blobs, started)
    freed = sum(blobs_now[b].size for b in removed_blobs)
    return GCReport(
        dry_run=request.dry_run,
        realizations=[
            GCRealization(rref=f.rref, stage=f.stage, created=f.created) for f in removed_rows
        ],
        blobs=sorted(removed_blobs),
        freed=freed,
        store_size=planned.store_size,
        kept_realizations=len(facts) - len(removed_rows),
        kept_blobs=len(blobs_now) - len(removed_blobs),
        young_blobs=planned.young_blobs,
        target_size=request.target_size,
        target_met=(
            request.target_size is None or planned.store_size - freed <= request.target_size
        ),
    )


def drop_blob_claims(conn: Connection, digests: Iterable[str], before: datetime) -> None:
    """Remove the VOs' claims on removed blobs. A claim recorded since *before* (the
    collection's start) stays: its bytes may have been uploaded again meanwhile (a claim
    on a blob the store lacks is harmless: ``/api/blobs/missing`` checks the store too)."""
    for part in chunks(sorted(digests), CHUNK):
        conn.execute(
            delete(blob_vos).where(blob_vos.c.digest.in_(part), blob_vos.c.created <= before)
        )


__all__ = [
    "backfill_blob_claims",
    "collect",
    "drop_blob_claims",
    "list_blobs",
    "list_pins",
    "pin",
    "read_rows",
    "remove_blob",
    "unpin",
]
