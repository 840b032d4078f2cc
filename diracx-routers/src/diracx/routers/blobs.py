"""Blobs: which ones the store lacks, upload (digest checked) and download.

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
from diracx.routers.auth import NormalUserAccess
from diracx.routers.dependencies import StoreDep
from diracx.routers.errors import ErrorResponse
from diracx.routers.logic import (
    ObjectStoreUploadError,
    complete_upload,
    plan_uploads,
    receive_blob,
)
from diracx.routers.params import BlobDigest
from diracx.routers.routing import DiracxRouter

router = DiracxRouter(policy=NormalUserAccess, prefix="/blobs", tags=["blobs"])

BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "The store has no such blob"}
}


@router.post("/missing")
async def missing_blobs(request: MissingBlobsRequest, store: StoreDep) -> MissingBlobsResponse:
    """Which of these blobs the store lacks: one call before uploading only those."""
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
    missing = await anyio.to_thread.run_sync(store.missing, request.digests)
    return MissingBlobsResponse(missing=missing)


@router.post("/uploads")
async def plan_blob_uploads(
    blobs: Annotated[list[BlobUpload], Body(max_length=100_000)], store: StoreDep
) -> UploadPlans:
    """How to upload each of these blobs the store lacks (blobs it has are left out).

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
    return await plan_uploads(store, blobs)


@router.post(
    "/uploads/{digest}/complete",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": BlobInfo, "description": "The blob was already in the store"},
        400: {
            "model": ErrorResponse,
            "description": "The upload does not hash to the digest: nothing was stored",
        },
        404: {"model": ErrorResponse, "description": "No such upload is pending"},
    },
)
async def complete_blob_upload(
    digest: BlobDigest, body: CompleteUpload, response: Response, store: StoreDep
) -> BlobInfo:
    """Finish an upload planned by ``POST /api/blobs/uploads``: the store checks that the
    uploaded bytes hash to *digest* before the blob becomes visible."""
    info, created = await complete_upload(store, digest, body.upload_id)
    if not created:
        response.status_code = status.HTTP_200_OK
    return info


@router.put(
    "/{digest}",
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": BlobInfo, "description": "The blob was already in the store"},
        400: {
            "model": ErrorResponse,
            "description": "The body does not hash to the digest (or the client is too old)",
        },
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
    digest: BlobDigest, request: Request, response: Response, store: StoreDep
) -> BlobInfo:
    """Upload a blob (``application/octet-stream``); refused if it does not hash to *digest*.

    Only with a local store: with an S3 store, upload through ``POST /api/blobs/uploads``.
    """
    if isinstance(store, S3Store):
        raise ObjectStoreUploadError(
            "this service keeps blobs in an object store: ask POST /api/blobs/uploads "
            "for upload URLs (the service does not take blob bytes itself)"
        )
    info, created = await receive_blob(store, digest, request.stream())
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
async def download_blob(digest: BlobDigest, store: StoreDep) -> Response:
    """A blob's bytes, verified against the digest as they are read; with an S3 store,
    a redirect to a presigned URL (follow it without the Authorization header)."""
    size = await anyio.to_thread.run_sync(store.size, digest)  # 404 if absent
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
