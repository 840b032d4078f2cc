"""Blobs: which ones the caller's VO lacks, upload (digest checked) and download.

Every answer is within the caller's VO (``diracx.routers.blob_logic``): a blob another
VO stored is missing, must be uploaded (and its bytes checked) to be claimed, and
cannot be downloaded; each new claim counts against the VO's ``store_bytes`` quota.

Uploads go by plans (``POST /api/blobs/uploads``), so that clients have one code
path whatever the store: with a local store a plan is the service's own
``PUT /api/blobs/{digest}``; with an S3 store it is presigned URLs to the bucket
(one PUT, or one per part), then ``POST /api/blobs/uploads/{digest}/complete``,
and downloads are redirected (307) to a presigned GET. With S3 the service never
relays blob bytes between clients and the bucket: it only reads a finished upload
back from the bucket to check its digest before the blob becomes visible.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import Body, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, StreamingResponse

from diracx.core.canonical import is_digest
from diracx.core.exceptions import CorruptObjectError
from diracx.core.models import (
    BlobInfo,
    BlobUpload,
    CompleteUpload,
    MissingBlobsRequest,
    MissingBlobsResponse,
    UploadPlans,
)
from diracx.core.store import CHUNK_SIZE
from diracx.db.os import S3Store
from diracx.routers import blob_logic
from diracx.routers.auth import CurrentUser, NormalUserAccess
from diracx.routers.blob_logic import ObjectStoreUploadError
from diracx.routers.dependencies import StoreDep
from diracx.routers.errors import ErrorResponse
from diracx.routers.params import BlobDigest
from diracx.routers.routing import DiracxRouter
from diracx.routers.store_deps import StoreDBDep, StoreLimit

router = DiracxRouter(policy=NormalUserAccess, prefix="/blobs", tags=["blobs"])

BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "The store has no such blob"}
}
QUOTA: dict[int | str, dict[str, Any]] = {
    403: {
        "model": ErrorResponse,
        "description": "The blobs would take the VO over its store quota (store_bytes)",
    }
}


@router.post("/missing")
async def missing_blobs(
    request: MissingBlobsRequest, user: CurrentUser, sdb: StoreDBDep, store: StoreDep
) -> MissingBlobsResponse:
    """Which of these blobs the caller's VO lacks: one call before uploading only those."""
    bad = [(i, d) for i, d in enumerate(request.digests) if not is_digest(d)]
    if bad:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "digests", i),
                    "msg": f"not a SHA-256 digest (64 lowercase hex digits): {d[:80]!r}",
                    "type": "digest",
                }
                for i, d in bad
            ]
        )
    missing = await blob_logic.missing(sdb, store, user.vo, request.digests)
    return MissingBlobsResponse(missing=missing)


@router.post("/uploads", responses=QUOTA)
async def plan_blob_uploads(
    blobs: Annotated[list[BlobUpload], Body(max_length=100_000)],
    user: CurrentUser,
    sdb: StoreDBDep,
    store: StoreDep,
    limit: StoreLimit,
) -> UploadPlans:
    """How to upload each of these blobs the caller's VO lacks (those it has are left
    out; a blob the store holds for another VO must be sent all the same).

    A ``single`` plan: send the whole blob with ``method`` to ``url`` with ``headers``
    (a relative URL is the service itself: send the usual credentials; an absolute
    one is the object store: send none), then, if ``upload_id`` is set, complete it.
    A ``multipart`` plan: PUT bytes ``[(n-1)*part_size, n*part_size)`` to part *n*'s
    URL, in any order, then complete it. The store checks the digest on completion.
    """
    sizes: dict[str, int] = {}
    conflicts = []
    for i, blob in enumerate(blobs):
        if sizes.setdefault(blob.digest, blob.size) != blob.size:
            conflicts.append((i, blob))
    if conflicts:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", i, "size"),
                    "msg": f"blob {b.digest} is listed twice with different sizes "
                    f"({sizes[b.digest]}, {b.size})",
                    "type": "size",
                }
                for i, b in conflicts
            ]
        )
    return await blob_logic.plan_uploads(sdb, store, user.vo, blobs, limit)


@router.post(
    "/uploads/{digest}/complete",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": BlobInfo, "description": "The VO had the blob already"},
        400: {
            "model": ErrorResponse,
            "description": "The upload does not hash to the digest: nothing was stored",
        },
        404: {"model": ErrorResponse, "description": "No such upload is pending"},
        **QUOTA,
    },
)
async def complete_blob_upload(
    digest: BlobDigest,
    body: CompleteUpload,
    response: Response,
    user: CurrentUser,
    sdb: StoreDBDep,
    store: StoreDep,
    limit: StoreLimit,
) -> BlobInfo:
    """Finish an upload planned by ``POST /api/blobs/uploads``: the store checks that the
    uploaded bytes hash to *digest* before the blob becomes the VO's."""
    info, created = await blob_logic.complete_upload(
        sdb, store, user.vo, digest, body.upload_id, limit=limit
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return info


@router.put(
    "/{digest}",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": BlobInfo, "description": "The VO had the blob already"},
        400: {
            "model": ErrorResponse,
            "description": "The body does not hash to the digest (or the client is too old)",
        },
        **QUOTA,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "the blob's bytes; they must hash to the digest",
            "content": BINARY,
        }
    },
)
async def upload_blob(
    digest: BlobDigest,
    request: Request,
    response: Response,
    user: CurrentUser,
    sdb: StoreDBDep,
    store: StoreDep,
    limit: StoreLimit,
) -> BlobInfo:
    """Upload a blob (``application/octet-stream``); refused if it does not hash to *digest*.

    Only with a local store: with an S3 store, upload through ``POST /api/blobs/uploads``.
    """
    if isinstance(store, S3Store):
        raise ObjectStoreUploadError(
            "this service keeps blobs in an object store: ask POST /api/blobs/uploads "
            "for upload URLs (the service does not take blob bytes itself)"
        )
    length = request.headers.get("content-length", "")
    info, created = await blob_logic.receive_blob(
        sdb,
        store,
        user.vo,
        digest,
        request.stream(),
        limit=limit,
        announced=int(length) if length.isdigit() else None,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return info


@router.get(
    "/{digest}",
    response_class=Response,
    responses={
        200: {"content": BINARY, "description": "The blob's bytes"},
        307: {"description": "With an S3 store: a presigned URL of the blob (no credentials)"},
        **NOT_FOUND,
    },
)
async def download_blob(
    digest: BlobDigest, user: CurrentUser, sdb: StoreDBDep, store: StoreDep
) -> Response:
    """A blob's bytes, verified against the digest as they are read; with an S3 store,
    a redirect to a presigned URL (follow it without the Authorization header). Only
    a blob the caller's VO has: another VO's is as absent as one nobody stored."""
    size = await blob_logic.readable_size(sdb, store, user.vo, digest)  # 404 if absent
    if isinstance(store, S3Store):
        url = await anyio.to_thread.run_sync(store.presign_get, digest)
        # the URL expires: neither it nor the redirect may be cached
        return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
    headers = {
        "Content-Length": str(size),
        "ETag": f'"{digest}"',
        "Cache-Control": "private, max-age=31536000, immutable",
    }
    if size <= CHUNK_SIZE:
        data = await anyio.to_thread.run_sync(store.read_bytes, digest)
        return Response(data, media_type="application/octet-stream", headers=headers)
    # A stream is checked at its end, after the status is sent: check the blob first, so
    # that a corrupt one is a clear error and not a broken stream (it costs a second read)
    if not await anyio.to_thread.run_sync(store.verify, digest):
        raise CorruptObjectError(f"blob {digest} is corrupt: run dirac store verify")
    return StreamingResponse(
        store.iter_chunks(digest), media_type="application/octet-stream", headers=headers
    )
