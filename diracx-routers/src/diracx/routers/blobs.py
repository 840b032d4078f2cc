"""Blobs: which ones the store lacks, upload (digest checked) and download."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from fastapi import Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse

from diracx.core.canonical import is_digest
from diracx.core.models import BlobInfo, MissingBlobsRequest, MissingBlobsResponse
from diracx.core.store import CHUNK_SIZE
from diracx.routers.auth import NormalUserAccess
from diracx.routers.dependencies import StoreDep
from diracx.routers.errors import ErrorResponse
from diracx.routers.logic import receive_blob
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
    """Upload a blob (``application/octet-stream``); refused if it does not hash to *digest*."""
    info, created = await receive_blob(store, digest, request.stream())
    if not created:
        response.status_code = status.HTTP_200_OK
    return info


@router.get(
    "/{digest}",
    response_class=Response,
    responses={200: {"content": BINARY, "description": "The blob's bytes"}, **NOT_FOUND},
)
async def download_blob(digest: BlobDigest, store: StoreDep) -> Response:
    """A blob's bytes, verified against the digest as they are read."""
    size = await anyio.to_thread.run_sync(store.size, digest)  # 404 if absent
    headers = {
        "Content-Length": str(size),
        "ETag": f'"{digest}"',
        "Cache-Control": "private, max-age=31536000, immutable",
    }
    if size <= CHUNK_SIZE:
        data = await anyio.to_thread.run_sync(store.read_bytes, digest)
        return Response(data, media_type="application/octet-stream", headers=headers)
    return StreamingResponse(
        store.iter_chunks(digest), media_type="application/octet-stream", headers=headers
    )
