"""The store, from the client: list and read realizations, their provenance and sizes,
local read-only copies (``path``), closures out to an archive and back in, verify.

``session.store`` is an :class:`AsyncStore` (``Store`` in the blocking API).

Closures are moved by the client through the blob routes: export downloads the
closure's blobs (verified) into the local cache and writes the archive from there;
import checks the whole archive first (every digest and identity), then uploads
what the service lacks as it uploads any blob (with S3, straight to the bucket),
then asks the service to record the realizations, which checks them again.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from diracx.client.store import StoreClient
from diracx.core.canonical import is_digest
from diracx.core.closure import (
    Closure,
    ImportResult,
    Provenance,
    SizeReport,
    TreeChange,
    VerifyReport,
    diff_trees,
    read_closure,
    write_closure,
)
from diracx.core.exceptions import DiracxError, ObjectNotFoundError
from diracx.core.models import RealizationInfo
from diracx.core.store import LocalStore
from diracx.core.tree import Tree, materialize_tree, remove_tree

if TYPE_CHECKING:
    from diracx.api.session import AsyncSession

UPLOAD_CONCURRENCY = 8
T = TypeVar("T")


class BadReferenceError(DiracxError):
    """Not an RRef (64 hex digits) nor, where one is accepted, a job id."""


def check_rref(rref: str) -> str:
    if not is_digest(rref):
        raise BadReferenceError(f"not an RRef (64 lowercase hex digits): {rref[:80]!r}")
    return rref


MIN_PREFIX = 6
PREFIX_RE = re.compile(rf"^[0-9a-f]{{{MIN_PREFIX},64}}\Z")


@dataclass
class ImportedClosure:
    """What an import did: the archive's roots, what was new, what was uploaded."""

    roots: list[str]
    result: ImportResult
    uploaded: int = 0
    uploaded_bytes: int = 0
    names: dict[str, str] = field(default_factory=dict)  # rref -> stage name


class AsyncStore:
    """The engine's store, seen from this session."""

    def __init__(self, session: AsyncSession, data_dir: Path) -> None:
        self._session = session
        self._api = StoreClient(session.client)
        self.data_dir = data_dir
        self.paths_dir = data_dir / "paths"

    # -- listing and reading -------------------------------------------------------------

    async def ls(
        self, *, name: str | None = None, dref: str | None = None, limit: int = 100
    ) -> list[RealizationInfo]:
        """Realizations, newest first: of the stages called *name*, or of a derivation."""
        if dref is not None:
            check_rref(dref)
        return await self._api.list_realizations(name=name, dref=dref, limit=limit)

    async def resolve(self, ref: str) -> str:
        """The RRef that *ref* names: an RRef, or a unique prefix of at least 6 hex digits."""
        if is_digest(ref):
            return ref
        if not PREFIX_RE.match(ref):
            raise BadReferenceError(
                f"not an RRef (64 hex digits, or a unique prefix of at least {MIN_PREFIX}): "
                f"{ref[:80]!r}"
            )
        found = await self._api.list_realizations(prefix=ref, limit=5)
        if not found:
            raise ObjectNotFoundError(f"no realization's RRef starts with {ref}")
        if len(found) > 1:
            shown = ", ".join(f"{r.rref} ({r.name})" for r in found[:4])
            raise BadReferenceError(f"{ref} is the start of several RRefs: {shown}")
        return found[0].rref

    async def info(self, rref: str) -> RealizationInfo:
        return await self._session.client.get_realization(await self.resolve(rref))

    async def tree(self, rref: str) -> Tree:
        """The output tree of a realization."""
        return await self._session.fetch_tree((await self.info(rref)).output)

    async def cat(self, rref: str, path: str) -> bytes:
        """The bytes of the file *path* of a realization's output (a symlink: its target)."""
        info = await self.info(rref)
        tree = await self._session.fetch_tree(info.output)
        entry = tree.entries.get(path.strip("/"))
        if entry is None or entry.digest is None:
            kind = "a directory" if entry is not None else "no such file"
            files = sorted(p for p, e in tree.entries.items() if e.kind != "directory")
            shown = ", ".join(files[:20]) + (" ..." if len(files) > 20 else "")
            raise ObjectNotFoundError(
                f"{path!r} in {info.name} {rref}: {kind}; its files: {shown or '(none)'}"
            )
        return await self._session.fetch_blob(entry.digest)

    async def path(self, rref: str) -> Path:
        """A read-only local copy of a realization's output (kept: the output never
        changes), under ``<data dir>/paths/<rref>``."""
        rref = await self.resolve(rref)
        dest = self.paths_dir / rref
        if dest.is_dir():
            return dest
        info = await self.info(rref)
        tree = await self._session.fetch_tree(info.output)
        await self._session.fetch_blobs(tree.blob_digests())
        await asyncio.to_thread(self._materialize, tree, dest)
        return dest

    def _materialize(self, tree: Tree, dest: Path) -> None:
        self.paths_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name[:16]}-", dir=self.paths_dir))
        try:
            materialize_tree(self._session.cache, tree, tmp / "out", readonly=True)
            try:
                os.rename(tmp / "out", dest)  # whole or not at all
            except OSError:
                if not dest.is_dir():  # not another process that finished first
                    raise
        finally:
            remove_tree(tmp)

    async def du(self, rrefs: Sequence[str] = ()) -> SizeReport:
        """Bytes per realization (*rrefs*, or every one) and in all, shared blobs once."""
        return await self._api.sizes([await self.resolve(r) for r in rrefs])

    async def deps(self, rref: str) -> Provenance:
        """A realization and every realization it was built from, recursively."""
        return await self._api.provenance(await self.resolve(rref))

    async def diff(self, old: str, new: str) -> list[TreeChange]:
        """The files added, removed or changed from one output to the other."""
        return diff_trees(await self.tree(old), await self.tree(new))

    async def log(self, ref: str | int) -> str:
        """The build log of a realization (an RRef) or of a job (its id)."""
        text = str(ref)
        if text.isdigit() and len(text) < 19:  # a job id (an RRef prefix of digits: not here)
            job = await self._session.client.get_job(int(text))
            if job.log is None:
                raise ObjectNotFoundError(f"job {job.id} ({job.name}, {job.status}) has no log")
            digest = job.log
        else:
            info = await self.info(text)
            if info.log is None:
                raise ObjectNotFoundError(f"realization {info.rref} ({info.name}) has no log")
            digest = info.log
        return (await self._session.fetch_blob(digest)).decode(errors="replace")

    # -- closures ------------------------------------------------------------------------

    async def export(self, rrefs: Iterable[str], dest: str | Path) -> Closure:
        """Write the closure of *rrefs* to the tar archive *dest*; return what it holds."""
        closure = await self._api.closure([await self.resolve(r) for r in rrefs])
        await self._session.fetch_blobs(closure.blobs)
        try:
            await asyncio.to_thread(write_closure, closure, self._session.cache, Path(dest))
        except OSError as exc:  # a directory that does not exist, no permission...
            raise DiracxError(f"cannot write the archive {dest}: {exc.strerror or exc}") from exc
        return closure

    async def import_closure(
        self, archive: str | Path, progress: Callable[[int], None] | None = None
    ) -> ImportedClosure:
        """Check the archive whole, upload the blobs the engine lacks, record the
        realizations. A tampered archive: TamperedArchiveError, and nothing is imported."""
        archive = Path(archive)
        if not archive.is_file():
            raise ObjectNotFoundError(f"no archive at {archive}")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="import-", dir=self.data_dir) as tmp:
            staging = LocalStore(tmp)
            manifest = await asyncio.to_thread(read_closure, archive, staging, progress)
            client = self._session.client
            plans = await client.plan_uploads(list(manifest.blobs.items()))
            limit = asyncio.Semaphore(UPLOAD_CONCURRENCY)

            async def upload(plan: Any) -> None:
                async with limit:
                    await client.send_blob(plan, staging.path(plan.digest))

            await asyncio.gather(*(upload(p) for p in plans))
            result = await self._api.import_closure(manifest.realizations)
        return ImportedClosure(
            roots=manifest.roots,
            result=result,
            uploaded=len(plans),
            uploaded_bytes=sum(p.size for p in plans),
            names={r.rref: r.name for r in manifest.realizations},
        )

    async def verify(self) -> VerifyReport:
        """Re-hash every blob of the engine's store (reads every byte)."""
        return await self._api.verify()


class Store:
    """The blocking face of :class:`AsyncStore` (``Session.store``)."""

    def __init__(self, run: Callable[..., Any], inner: AsyncStore) -> None:
        self._run = run  # runs a coroutine function on the session's loop and waits
        self._inner = inner

    def _call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        return cast(T, self._run(func, *args))

    @property
    def paths_dir(self) -> Path:
        return self._inner.paths_dir

    def ls(
        self, *, name: str | None = None, dref: str | None = None, limit: int = 100
    ) -> list[RealizationInfo]:
        return self._call(functools.partial(self._inner.ls, name=name, dref=dref, limit=limit))

    def resolve(self, ref: str) -> str:
        return self._call(self._inner.resolve, ref)

    def info(self, rref: str) -> RealizationInfo:
        return self._call(self._inner.info, rref)

    def tree(self, rref: str) -> Tree:
        return self._call(self._inner.tree, rref)

    def cat(self, rref: str, path: str) -> bytes:
        return self._call(self._inner.cat, rref, path)

    def path(self, rref: str) -> Path:
        return self._call(self._inner.path, rref)

    def du(self, rrefs: Sequence[str] = ()) -> SizeReport:
        return self._call(self._inner.du, list(rrefs))

    def deps(self, rref: str) -> Provenance:
        return self._call(self._inner.deps, rref)

    def diff(self, old: str, new: str) -> list[TreeChange]:
        return self._call(self._inner.diff, old, new)

    def log(self, ref: str | int) -> str:
        return self._call(self._inner.log, ref)

    def export(self, rrefs: Iterable[str], dest: str | Path) -> Closure:
        return self._call(self._inner.export, list(rrefs), dest)

    def import_closure(
        self, archive: str | Path, progress: Callable[[int], None] | None = None
    ) -> ImportedClosure:
        return self._call(self._inner.import_closure, archive, progress)

    def verify(self) -> VerifyReport:
        return self._call(self._inner.verify)
