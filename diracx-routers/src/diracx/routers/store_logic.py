"""What the store routes do, apart from HTTP: closures, sizes, imports, verification.

Everything is within the caller's VO: its realizations, and the blobs it has a claim
on. A closure walk stops at a realization the VO may not see (404, as for one that
does not exist); an import needs every blob to be the VO's (uploaded by it, its bytes
checked) and records the VO's claims. Blocking store reads (tree manifests, hashing)
run on a thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import anyio.to_thread

from diracx.core.canonical import is_digest
from diracx.core.closure import (
    Closure,
    ClosureImport,
    ClosureRealization,
    ImportResult,
    MissingObject,
    Provenance,
    RealizationSize,
    SizeReport,
    VerifyReport,
    check_record,
    derivation_trees,
    needed_trees,
)
from diracx.core.derivation import Derivation
from diracx.core.exceptions import (
    CorruptObjectError,
    DiracxError,
    InvalidTreeError,
    ObjectNotFoundError,
)
from diracx.core.store import LocalStore
from diracx.core.tree import Tree, load_tree
from diracx.db.os import S3Store
from diracx.db.store_queries import StoreDB, list_blobs
from diracx.routers.blob_logic import missing as missing_blobs

Store = LocalStore | S3Store


class InvalidClosureError(DiracxError):
    """An import whose identities do not hold or whose blobs are not uploaded (a 400)."""


class _Trees:
    """Tree manifests read from the store (verified), each once per request."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._trees: dict[str, tuple[Tree, int]] = {}

    def get(self, digest: str) -> tuple[Tree, int]:
        """The tree and the size of its manifest."""
        if digest not in self._trees:
            data = self.store.read_bytes(digest)
            self._trees[digest] = (Tree.from_bytes(data), len(data))
        return self._trees[digest]

    def blobs(self, digest: str) -> dict[str, int]:
        """Every blob of the tree, the manifest included, with its size."""
        tree, size = self.get(digest)
        found = {e.digest: e.size for e in tree.entries.values() if e.digest is not None}
        found[digest] = size
        return found


async def provenance(sdb: StoreDB, vo: str, rref: str) -> Provenance:
    records = await sdb.closure(vo, [rref])
    infos = await sdb.realization_infos(vo, [r.rref for r in records])
    trees = {r.rref: derivation_trees(Derivation.model_validate_json(r.body)) for r in records}
    return Provenance(root=rref, realizations=infos, trees={k: v for k, v in trees.items() if v})


def _closure_blobs(store: Store, records: Sequence[ClosureRealization]) -> dict[str, int]:
    trees = _Trees(store)
    blobs: dict[str, int] = {}
    for digest in needed_trees(records):
        blobs.update(trees.blobs(digest))
    for rec in records:
        if rec.log is not None and rec.log not in blobs:
            blobs[rec.log] = store.size(rec.log)
    return dict(sorted(blobs.items()))


async def closure(sdb: StoreDB, store: Store, vo: str, rrefs: Sequence[str]) -> Closure:
    """The realizations *rrefs* came from, recursively, and every blob they need."""
    roots = list(dict.fromkeys(rrefs))
    records = await sdb.closure(vo, roots)
    blobs = await anyio.to_thread.run_sync(_closure_blobs, store, records)
    return Closure(roots=roots, realizations=records, blobs=blobs)


def _sizes(store: Store, rows: Sequence[tuple[str, str, str | None, str]]) -> SizeReport:
    trees = _Trees(store)
    total: dict[str, int] = {}
    out: list[RealizationSize] = []
    for rref, output, log, name in rows:
        own = trees.blobs(output)
        files = sum(1 for e in trees.get(output)[0].entries.values() if e.kind != "directory")
        if log is not None:
            own[log] = store.size(log)
        total.update(own)
        out.append(RealizationSize(rref=rref, name=name, files=files, size=sum(own.values())))
    return SizeReport(realizations=out, blobs=len(total), total=sum(total.values()))


async def sizes(sdb: StoreDB, store: Store, vo: str, rrefs: Sequence[str]) -> SizeReport:
    """Bytes per realization (*rrefs*, or every one of *vo*) and in all, shared blobs
    counted once."""
    if rrefs:
        infos = await sdb.realization_infos(vo, rrefs)
        for r in rrefs:
            if r not in infos:
                raise ObjectNotFoundError(f"realization {r} does not exist")
        rows = [(i.rref, i.output, i.log, i.name) for i in (infos[r] for r in dict.fromkeys(rrefs))]
    else:
        rows = await sdb.referenced(vo)
    return await anyio.to_thread.run_sync(_sizes, store, rows)


def _read_trees(store: Store, trees: dict[str, str]) -> dict[str, Tree]:
    """Each tree (the VO has it), read from the store; refused if it is not a tree."""
    found: dict[str, Tree] = {}
    for digest, why in trees.items():
        try:
            found[digest] = load_tree(store, digest)
        except ObjectNotFoundError:
            raise InvalidClosureError(
                f"tree {digest} ({why}) is not in the store: upload it first"
            ) from None
        except InvalidTreeError as exc:
            raise InvalidClosureError(f"blob {digest} ({why}) is not a tree: {exc}") from None
    return found


async def _check_blobs(
    sdb: StoreDB, store: Store, vo: str, records: Sequence[ClosureRealization]
) -> dict[str, int]:
    """Every blob of *records* must be *vo*'s (uploaded by it): their sizes."""
    trees = needed_trees(records)
    lacking = await missing_blobs(sdb, store, vo, list(trees))
    if lacking:
        raise InvalidClosureError(
            f"tree {lacking[0]} ({trees[lacking[0]]}) is not in the store: upload it first"
        )
    read = await anyio.to_thread.run_sync(_read_trees, store, trees)
    for digest, tree in read.items():
        lacking = await missing_blobs(sdb, store, vo, sorted(tree.blob_digests()))
        if lacking:
            raise InvalidClosureError(
                f"blob {lacking[0]} of tree {digest} ({trees[digest]}) is not in the store: "
                "upload it first"
            )
    lacking = await missing_blobs(sdb, store, vo, [r.log for r in records if r.log is not None])
    if lacking:
        raise InvalidClosureError(f"log {lacking[0]} is not in the store: upload it first")
    return await anyio.to_thread.run_sync(_closure_blobs, store, records)


async def import_closure(
    sdb: StoreDB, store: Store, vo: str, request: ClosureImport, limit: int | None
) -> ImportResult:
    """Record realizations brought from another store, checking everything first:
    DRefs, RRefs, inputs (in the request or *vo*'s) and blobs (already uploaded by
    *vo*), then *vo*'s claims on them all. Nothing is recorded unless everything holds."""
    records = request.realizations
    given = {r.rref for r in records}
    for rec in records:
        try:
            check_record(rec)
        except ValueError as exc:
            raise InvalidClosureError(f"import refused, nothing recorded: {exc}") from None
    inputs = {r for rec in records for rs in rec.context.values() for r in rs} - given
    if inputs:
        absent = sorted(set(inputs) - await sdb.visible(vo, sorted(inputs)))
        if absent:
            raise InvalidClosureError(
                f"import refused, nothing recorded: input realization {absent[0]} is neither "
                "in the import nor in the store"
            )
    blobs = await _check_blobs(sdb, store, vo, records)
    new = await sdb.import_closure(vo, records, blobs, limit)
    fresh = set(new)
    return ImportResult(
        imported=[r.rref for r in records if r.rref in fresh],
        existing=[r.rref for r in records if r.rref not in fresh],
    )


def _verify(
    store: Store,
    names: Iterable[str],
    rows: Sequence[tuple[str, str, str | None, str]],
    vo: str | None,
) -> VerifyReport:
    checked = size = 0
    corrupt: list[str] = []
    missing: dict[str, str] = {}
    for name in names:
        checked += 1
        try:
            if not is_digest(name) or not store.verify(name):
                corrupt.append(name)
                continue
            size += store.size(name)
        except ObjectNotFoundError:  # removed meanwhile (garbage collection)
            checked -= 1
            if vo is not None:  # a claim on a blob the store lost
                missing[name] = f"a blob of VO {vo!r}"
    bad = set(corrupt)
    trees = _Trees(store)
    for rref, output, log, rname in rows:
        what = f"{rname} {rref}"
        if log is not None and not store.has(log):
            missing.setdefault(log, f"the log of {what}")
        if output in bad:
            continue
        if not store.has(output):
            missing.setdefault(output, f"the output tree of {what}")
            continue
        try:
            tree, _ = trees.get(output)
        except (CorruptObjectError, InvalidTreeError):
            continue
        for path, entry in sorted(tree.entries.items()):
            d = entry.digest
            if d is not None and d not in missing and not store.has(d):
                missing[d] = f"{path!r} in the output of {what}"
    return VerifyReport(
        checked=checked,
        size=size,
        corrupt=corrupt,
        missing=[MissingObject(digest=d, needed_by=w) for d, w in missing.items()],
    )


async def verify(sdb: StoreDB, store: Store, vo: str | None) -> VerifyReport:
    """Re-hash the blobs of *vo* (None: every blob of the store); list the corrupt ones
    and those its realizations lack."""
    rows = await sdb.referenced(vo)
    if vo is None:
        return await anyio.to_thread.run_sync(_verify, store, list_blobs(store), rows, None)
    names = sorted(await sdb.claimed_blobs(vo))
    return await anyio.to_thread.run_sync(_verify, store, names, rows, vo)


def check_digests(rrefs: Sequence[str]) -> None:
    """Refuse RRefs that are not digests (a 422 would be the schema's; this says which)."""
    bad = [r for r in rrefs if not is_digest(r)]
    if bad:
        raise InvalidClosureError(
            f"not an RRef (64 lowercase hex digits): {bad[0][:80]!r}"
            + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
        )
