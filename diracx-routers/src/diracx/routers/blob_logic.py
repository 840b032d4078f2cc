"""What the blob routes do within the caller's VO, apart from HTTP.

The store keeps each blob once, whoever sent it; a VO has a blob only once it has a
claim on it (``blob_vos``). A VO gets a claim by sending the blob's bytes, which must
hash to its digest, even when the store already holds them: so a digest is proof of
nothing, and "which of these do you lack", uploads and downloads answer exactly as if
the store held only the VO's blobs. A new claim counts against the VO's
``store_bytes`` quota.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import anyio.to_thread

from diracx.core.exceptions import CorruptObjectError, DiracxError, ObjectNotFoundError
from diracx.core.models import BlobInfo, BlobUpload, SingleUpload, UploadPlans
from diracx.core.store import CHUNK_SIZE, LocalStore
from diracx.db.os import S3Store, UnknownUploadError
from diracx.db.store_queries import StoreDB, StoreQuotaExceededError, upload_pending

Store = LocalStore | S3Store


class InvalidUploadError(DiracxError):
    """An upload whose bytes do not hash to the digest in its URL (a 400)."""


class ObjectStoreUploadError(DiracxError):
    """A blob sent through the service although the store is S3 (a 400: use the plans)."""


def local_upload_url(digest: str) -> str:
    """The service's own upload URL, relative to the service URL (``DIRACX_URL``)."""
    return f"/api/blobs/{digest}"


def not_found(digest: str) -> ObjectNotFoundError:
    """The same answer for a blob nobody stored and one another VO stored."""
    return ObjectNotFoundError(f"blob {digest} is not in the store")


async def missing(sdb: StoreDB, store: Store, vo: str, digests: Sequence[str]) -> list[str]:
    """Those of *digests* that *vo* lacks, in order, without duplicates: it has no claim
    on them, or the store lost them. The blobs it has get their time refreshed (garbage
    collection spares a blob a client was just told not to send)."""
    ordered = list(dict.fromkeys(digests))
    claimed = await sdb.visible_blobs(vo, ordered)
    lost = set(await anyio.to_thread.run_sync(store.missing, [d for d in ordered if d in claimed]))
    return [d for d in ordered if d not in claimed or d in lost]


async def check_room(sdb: StoreDB, vo: str, needed: int, limit: int | None) -> None:
    """StoreQuotaExceededError now, rather than after the bytes are sent."""
    if limit is not None and needed:
        used = await sdb.store_bytes(vo)
        if used + needed > limit:
            raise StoreQuotaExceededError(vo, used, needed, limit)


async def plan_uploads(
    sdb: StoreDB, store: Store, vo: str, blobs: list[BlobUpload], limit: int | None
) -> UploadPlans:
    """How to upload each of *blobs* that *vo* lacks: presigned URLs to the object
    store, or the service's own PUT for a local store (the client does the same either
    way). Refused (403) if they would not fit in the VO's quota."""
    sizes = {b.digest: b.size for b in blobs}
    lacking = await missing(sdb, store, vo, list(sizes))
    claimed = await sdb.visible_blobs(vo, lacking)  # claims on blobs the store lost
    await check_room(sdb, vo, sum(sizes[d] for d in lacking if d not in claimed), limit)
    if isinstance(store, S3Store):

        def presign() -> UploadPlans:
            return UploadPlans(uploads=[store.plan_upload(d, sizes[d]) for d in lacking])

        return await anyio.to_thread.run_sync(presign)
    return UploadPlans(
        uploads=[
            SingleUpload(
                digest=d,
                size=sizes[d],
                url=local_upload_url(d),
                headers={"Content-Type": "application/octet-stream"},
            )
            for d in lacking
        ]
    )


def _refreshed_size(store: LocalStore, digest: str) -> int | None:
    """The blob's size, its time refreshed (see ``LocalStore.refresh``); None if absent."""
    try:
        return store.size(digest) if store.refresh(digest) else None
    except ObjectNotFoundError:
        return None


async def _write_verified(store: LocalStore, digest: str, chunks: AsyncIterator[bytes]) -> int:
    """Write the body (chunks of about ``CHUNK_SIZE``, off the event loop); it must hash to
    *digest* (a copy the store has already is kept, the new one dropped). Its size."""
    with await anyio.to_thread.run_sync(store.writer) as writer:
        pending: list[bytes] = []
        pending_size = 0
        async for chunk in chunks:
            pending.append(chunk)
            pending_size += len(chunk)
            if pending_size >= CHUNK_SIZE:
                await anyio.to_thread.run_sync(writer.write, b"".join(pending))
                pending, pending_size = [], 0
        data = b"".join(pending)

        def finish() -> int:
            writer.write(data)
            return writer.commit(digest)[1]

        try:
            return await anyio.to_thread.run_sync(finish)
        except CorruptObjectError as exc:
            raise InvalidUploadError(f"upload refused, nothing stored: {exc}") from None


async def receive_blob(
    sdb: StoreDB,
    store: LocalStore,
    vo: str,
    digest: str,
    chunks: AsyncIterator[bytes],
    *,
    limit: int | None,
    announced: int | None = None,
) -> tuple[BlobInfo, bool]:
    """Take an upload for *vo* if its bytes hash to *digest*; the blob, and whether the
    VO's claim on it is new. Bytes the store holds already are checked all the same,
    and kept once. *announced* (the Content-Length) lets a quota refuse before reading."""
    if digest in await sdb.visible_blobs(vo, [digest]):
        size = await anyio.to_thread.run_sync(_refreshed_size, store, digest)
        if size is not None:
            async for _ in chunks:  # drain the body: the VO has the blob already
                pass
            return BlobInfo(digest=digest, size=size), False
    if announced is not None:
        await check_room(sdb, vo, announced, limit)
    size = await _write_verified(store, digest, chunks)
    await sdb.claim_blobs(vo, {digest: size}, limit)
    return BlobInfo(digest=digest, size=size), True


async def complete_upload(
    sdb: StoreDB, store: Store, vo: str, digest: str, upload_id: str, *, limit: int | None
) -> tuple[BlobInfo, bool]:
    """Check a finished upload (its bytes must hash to *digest*), put the blob in place
    and record *vo*'s claim on it; the blob, and whether the claim is new."""
    if not isinstance(store, S3Store):
        raise InvalidUploadError(
            "this service keeps blobs in a local directory: PUT /api/blobs/{digest} "
            "stores a blob, and there is no upload to complete"
        )
    had = digest in await sdb.visible_blobs(vo, [digest])
    if not had and not await anyio.to_thread.run_sync(upload_pending, store, digest, upload_id):
        # the token of an upload is known only to whoever planned it: without the staged
        # bytes, finishing it would only tell (and hand over) another VO's blob
        raise UnknownUploadError(
            f"no upload {upload_id[:80]!r} of blob {digest} is pending: it was completed, "
            "abandoned or never started (ask POST /api/blobs/uploads for a new one)"
        )
    size, _ = await anyio.to_thread.run_sync(store.complete_upload, digest, upload_id)
    await sdb.claim_blobs(vo, {digest: size}, limit)
    return BlobInfo(digest=digest, size=size), not had


async def readable_size(sdb: StoreDB, store: Store, vo: str, digest: str) -> int:
    """The size of a blob *vo* may read (404 if it has no claim, or the store lost it)."""
    if digest not in await sdb.visible_blobs(vo, [digest]):
        raise not_found(digest)
    return await anyio.to_thread.run_sync(store.size, digest)
