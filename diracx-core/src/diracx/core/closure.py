"""Inspecting the store and moving closures between stores.

The *closure* of some realizations is everything needed to use them elsewhere:
the realizations, their derivations, the realizations of their inputs
(recursively), and every blob these name (output trees and their files, logs,
the trees their derivations take). A closure travels as a tar archive:

- ``diracx-closure.json``: the manifest (:class:`ClosureManifest`), first;
- ``blobs/<digest>``: each blob, once.

Nothing in an archive is trusted: :func:`read_closure` checks that every blob
hashes to its name, that every derivation body hashes to its DRef, that every
RRef is ``H(DRef, context, output)``, that the closure is closed (every input
realization and every blob it names is in the archive), before anything is
imported. Metrics, timings and the log digest are not part of the RRef: they are
carried as recorded (the log itself is a blob, checked like the others).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from diracx.core.canonical import canonical_json, is_digest, sha256_hex
from diracx.core.derivation import Derivation, TreeInput, realization_ref
from diracx.core.exceptions import CorruptObjectError, DiracxError, InvalidTreeError
from diracx.core.models import RealizationInfo
from diracx.core.store import CHUNK_SIZE, LocalStore
from diracx.core.tree import Tree

MANIFEST_NAME = "diracx-closure.json"
CLOSURE_VERSION = 1
MAX_MANIFEST_BYTES = 256 * 1024 * 1024


class TamperedArchiveError(DiracxError):
    """A closure archive whose content does not match its digests: nothing is imported."""


# -- the documents of the store routes ---------------------------------------------------


class ClosureRealization(BaseModel):
    """A realization as it travels between stores: with its derivation's body."""

    rref: str
    dref: str
    name: str
    body: str = Field(description="the derivation's canonical JSON (hashes to the DRef)")
    output: str
    context: dict[str, list[str]] = {}
    metrics: dict[str, Any] = {}
    log: str | None = None
    started: datetime | None = None
    finished: datetime | None = None


class Closure(BaseModel):
    """What ``POST /api/store/closure`` answers: the realizations (roots first) and
    every blob they need, with its size."""

    roots: list[str]
    realizations: list[ClosureRealization]
    blobs: dict[str, int] = Field(description="digest -> size of every blob of the closure")


class ClosureRequest(BaseModel):
    rrefs: list[str] = Field(min_length=1, max_length=10_000)


class ClosureImport(BaseModel):
    """The realizations to record (their blobs must be uploaded first)."""

    realizations: list[ClosureRealization] = Field(max_length=100_000)


class ImportResult(BaseModel):
    imported: list[str] = Field(description="realizations that were new to this store")
    existing: list[str] = Field(description="realizations the store already had")


class RealizationSize(BaseModel):
    rref: str
    name: str
    files: int
    size: int = Field(description="bytes of its output files, tree manifest and log")


class SizeReport(BaseModel):
    realizations: list[RealizationSize]
    blobs: int = Field(description="distinct blobs, shared ones counted once")
    total: int = Field(description="bytes of the distinct blobs")


class SizeRequest(BaseModel):
    rrefs: list[str] = Field(default=[], max_length=10_000, description="empty: every one")


class MissingObject(BaseModel):
    digest: str
    needed_by: str = Field(description="what refers to it")


class VerifyReport(BaseModel):
    checked: int = Field(description="blobs re-hashed")
    size: int = Field(description="bytes re-hashed")
    corrupt: list[str] = Field(description="blobs whose bytes do not hash to their name")
    missing: list[MissingObject] = Field(description="blobs that realizations need but lack")

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing


class Provenance(BaseModel):
    """A realization and everything it came from (``context``: input -> rrefs)."""

    root: str
    realizations: dict[str, RealizationInfo]
    trees: dict[str, dict[str, str]] = Field(
        default={},
        description="rref -> the trees its derivation takes (input name, or 'source' for "
        "a python stage's code) -> tree digest",
    )


# -- checks ------------------------------------------------------------------------------


def check_record(rec: ClosureRealization) -> Derivation:
    """The record's derivation, if its identities hold; else ValueError saying which not."""
    for what, value in (("rref", rec.rref), ("dref", rec.dref), ("output", rec.output)):
        if not is_digest(value):
            raise ValueError(f"realization {rec.rref[:80]!r}: {what} is not a SHA-256 digest")
    if rec.log is not None and not is_digest(rec.log):
        raise ValueError(f"realization {rec.rref}: log is not a SHA-256 digest")
    body = rec.body.encode()
    if sha256_hex(body) != rec.dref:
        raise ValueError(f"realization {rec.rref}: its derivation body does not hash to {rec.dref}")
    try:
        doc = json.loads(body)
        if canonical_json(doc) != body:
            raise ValueError("not canonical JSON")
        drv = Derivation.model_validate(doc)
    except ValueError as exc:  # ValidationError is a ValueError
        raise ValueError(f"derivation {rec.dref} is not a valid derivation: {exc}") from None
    if drv.name != rec.name:
        raise ValueError(f"realization {rec.rref}: named {rec.name!r}, its derivation {drv.name!r}")
    for name, rrefs in rec.context.items():
        if name not in drv.inputs or not all(is_digest(r) for r in rrefs):
            raise ValueError(f"realization {rec.rref}: bad context entry {name!r}")
    if realization_ref(rec.dref, rec.context, rec.output) != rec.rref:
        raise ValueError(
            f"realization {rec.rref} ({rec.name}): H(dref, context, output) is not its RRef"
        )
    return drv


def derivation_trees(drv: Derivation) -> dict[str, str]:
    """The trees a derivation takes, by input name (``source``: a python stage's code)."""
    trees = {k: v.tree for k, v in sorted(drv.inputs.items()) if isinstance(v, TreeInput)}
    source = drv.builder.get("source")
    if drv.builder.get("executor") == "python" and isinstance(source, str):
        trees.setdefault("source", source)
    return trees


def needed_trees(records: Iterable[ClosureRealization]) -> dict[str, str]:
    """Tree digest -> what needs it: every output, and every tree a derivation takes."""
    trees: dict[str, str] = {}
    for rec in records:
        trees.setdefault(rec.output, f"the output of {rec.name} ({rec.rref})")
        drv = Derivation.model_validate_json(rec.body)
        for digest in sorted(drv.tree_digests()):
            trees.setdefault(digest, f"derivation {rec.name} ({rec.dref})")
    return trees


# -- trees -------------------------------------------------------------------------------


class TreeChange(BaseModel):
    path: str
    change: Literal["added", "removed", "changed"]
    old: str | None = None  # "kind digest size", for changed and removed
    new: str | None = None


def _describe(tree: Tree, path: str) -> str:
    e = tree.entries[path]
    return f"{e.kind} {e.digest or '-'} {e.size}"


def diff_trees(old: Tree, new: Tree) -> list[TreeChange]:
    """Paths added, removed, or changed (content, kind or mode) from *old* to *new*."""
    changes: list[TreeChange] = []
    for path in sorted(set(old.entries) | set(new.entries)):
        a, b = old.entries.get(path), new.entries.get(path)
        if a is None:
            changes.append(TreeChange(path=path, change="added", new=_describe(new, path)))
        elif b is None:
            changes.append(TreeChange(path=path, change="removed", old=_describe(old, path)))
        elif a != b:
            changes.append(
                TreeChange(
                    path=path, change="changed", old=_describe(old, path), new=_describe(new, path)
                )
            )
    return changes


# -- the archive -------------------------------------------------------------------------


class ClosureManifest(BaseModel):
    format: Literal["diracx-closure"] = "diracx-closure"
    version: int = CLOSURE_VERSION
    roots: list[str]
    realizations: list[ClosureRealization]
    blobs: dict[str, int]


class _VerifyingReader:
    """A blob's bytes read from *path*; raises at the end if they do not hash to *digest*."""

    def __init__(self, path: Path, digest: str) -> None:
        self._file = open(path, "rb")  # noqa: SIM115 - closed by close()
        self._hash = hashlib.sha256()
        self._digest = digest

    def read(self, n: int = -1) -> bytes:
        data = self._file.read(n)
        self._hash.update(data)
        if not data and self._hash.hexdigest() != self._digest:
            raise CorruptObjectError(f"blob {self._digest} is corrupt in the local cache")
        return data

    def close(self) -> None:
        self._file.close()


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    """A member with fixed metadata: the same closure always gives the same archive."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o444
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_closure(closure: Closure, blobs: LocalStore, dest: Path) -> None:
    """Write *closure* to the archive *dest*, each blob read from *blobs* and verified.

    The archive is written beside *dest* and renamed into place: never half an archive.
    """
    manifest = ClosureManifest(
        roots=closure.roots, realizations=closure.realizations, blobs=closure.blobs
    )
    data = canonical_json(manifest.model_dump(mode="json"))
    tmp = dest.with_name(f".{dest.name}.diracx-tmp")
    try:
        with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
            tar.addfile(_tarinfo(MANIFEST_NAME, len(data)), io.BytesIO(data))
            for digest in sorted(closure.blobs):
                path = blobs.path(digest)
                size = path.stat().st_size
                if size != closure.blobs[digest]:
                    raise CorruptObjectError(f"blob {digest} has the wrong size in the cache")
                reader = _VerifyingReader(path, digest)
                try:
                    tar.addfile(_tarinfo(f"blobs/{digest}", size), reader)
                    reader.read()  # the end: checks the digest
                finally:
                    reader.close()
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_closure(
    archive: Path, staging: LocalStore, progress: Callable[[int], None] | None = None
) -> ClosureManifest:
    """Check the archive *archive* whole and put its blobs in *staging*; return its manifest.

    Raises TamperedArchiveError (the message says what is wrong) if any blob does
    not hash to its name, any identity does not hold, or anything the closure
    needs is not in it. *staging* should be a store of its own, thrown away on error.
    """
    name = archive.name
    try:
        tar = tarfile.open(archive, "r:")  # noqa: SIM115 - closed by the with below
    except (OSError, tarfile.TarError) as exc:
        raise TamperedArchiveError(f"{name} is not a closure archive (a tar file): {exc}") from None
    manifest: ClosureManifest | None = None
    seen: set[str] = set()
    with tar:
        try:
            for member in tar:
                if member.name == MANIFEST_NAME and manifest is None:
                    manifest = _read_manifest(tar, member, name)
                    continue
                digest = member.name.removeprefix("blobs/")
                if not member.name.startswith("blobs/") or not is_digest(digest):
                    raise TamperedArchiveError(f"{name}: unexpected member {member.name[:100]!r}")
                if not member.isreg() or digest in seen:
                    raise TamperedArchiveError(f"{name}: {member.name} is not one regular file")
                source = tar.extractfile(member)
                assert source is not None
                try:
                    with staging.writer() as writer:
                        while chunk := source.read(CHUNK_SIZE):
                            writer.write(chunk)
                        writer.commit(digest)
                except CorruptObjectError:
                    raise TamperedArchiveError(
                        f"{name} is corrupt or was tampered with: {member.name} does not hash "
                        "to its name; nothing was imported"
                    ) from None
                seen.add(digest)
                if progress is not None:
                    progress(member.size)
        except (OSError, tarfile.TarError, EOFError) as exc:
            raise TamperedArchiveError(f"{name} is truncated or unreadable: {exc}") from None
    if manifest is None:
        raise TamperedArchiveError(f"{name} has no {MANIFEST_NAME}: not a closure archive")
    if seen != set(manifest.blobs):
        odd = sorted(seen ^ set(manifest.blobs))[0]
        raise TamperedArchiveError(
            f"{name} is corrupt or was tampered with: blob {odd} is in the archive or in its "
            "manifest, not both; nothing was imported"
        )
    check_manifest(manifest, staging, name)
    return manifest


def _read_manifest(tar: tarfile.TarFile, member: tarfile.TarInfo, name: str) -> ClosureManifest:
    if not member.isreg() or member.size > MAX_MANIFEST_BYTES:
        raise TamperedArchiveError(f"{name}: {MANIFEST_NAME} is not a manifest")
    source = tar.extractfile(member)
    assert source is not None
    try:
        return ClosureManifest.model_validate_json(source.read())
    except ValidationError as exc:
        raise TamperedArchiveError(f"{name}: malformed {MANIFEST_NAME}: {exc}") from None


def check_manifest(manifest: ClosureManifest, staging: LocalStore, name: str) -> None:
    """Every identity holds and the closure is closed (its blobs already in *staging*)."""

    def refuse(why: str) -> TamperedArchiveError:
        return TamperedArchiveError(
            f"{name} is corrupt or was tampered with: {why}; nothing was imported"
        )

    rrefs = {r.rref for r in manifest.realizations}
    for root in manifest.roots:
        if root not in rrefs:
            raise refuse(f"root {root[:80]} is not among its realizations")
    needed: dict[str, str] = {}
    for rec in manifest.realizations:
        try:
            check_record(rec)
        except ValueError as exc:
            raise refuse(str(exc)) from None
        for input_name, inputs in rec.context.items():
            for r in inputs:
                if r not in rrefs:
                    raise refuse(f"{rec.name} ({rec.rref}) input {input_name!r}: {r} is missing")
        if rec.log is not None:
            needed.setdefault(rec.log, f"the log of {rec.name} ({rec.rref})")
    for tree_digest, why in needed_trees(manifest.realizations).items():
        needed.setdefault(tree_digest, why)
        if not staging.has(tree_digest):
            continue  # reported below
        try:
            tree = Tree.from_bytes(staging.read_bytes(tree_digest))
        except InvalidTreeError as exc:
            raise refuse(f"blob {tree_digest} ({why}) is not a tree: {exc}") from None
        for path, entry in sorted(tree.entries.items()):
            if entry.digest is not None:
                needed.setdefault(entry.digest, f"{path!r} of {why}")
    for digest, why in needed.items():
        if not staging.has(digest):
            raise refuse(f"blob {digest} ({why}) is not in the archive")
    for digest, size in manifest.blobs.items():
        if staging.size(digest) != size:
            raise refuse(f"blob {digest} has {staging.size(digest)} bytes, not {size}")
