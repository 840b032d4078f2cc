"""The hand-written layer over the generated client.

It sends the bearer token and ``DiracX-Client-Version`` on every request,
turns error responses into ``DiracxHTTPError`` with the server's message, and
returns diracx.core models. Blobs are streamed with the generated client's
httpx connection, so large files never sit whole in memory.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from diracx.client._generated.api.blobs import missing_blobs as missing_blobs_api
from diracx.client._generated.api.jobs import get_job as get_job_api
from diracx.client._generated.api.pipelines import get_pipeline as get_pipeline_api
from diracx.client._generated.api.pipelines import pipeline_events as pipeline_events_api
from diracx.client._generated.api.pipelines import submit_pipeline as submit_pipeline_api
from diracx.client._generated.api.realizations import get_realization as get_realization_api
from diracx.client._generated.api.realizations import list_realizations as list_realizations_api
from diracx.client._generated.api.well_known import get_metadata as get_metadata_api
from diracx.client._generated.client import AuthenticatedClient
from diracx.client._generated.models import MissingBlobsRequest
from diracx.client._generated.models import PipelineSubmission as GeneratedSubmission
from diracx.client._generated.types import Response
from diracx.core.derivation import PipelineSubmission
from diracx.core.exceptions import CorruptObjectError, DiracxError
from diracx.core.models import (
    JobInfo,
    Metadata,
    PipelineEvents,
    PipelineInfo,
    RealizationInfo,
    SubmitResponse,
)
from diracx.core.store import CHUNK_SIZE, LocalStore
from diracx.core.version import __version__

VERSION_HEADER = "DiracX-Client-Version"
M = TypeVar("M", bound=BaseModel)


class DiracxHTTPError(DiracxError):
    """The service answered with an error; ``str()`` is its message."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _detail(response: httpx.Response | Response[Any]) -> str:
    try:
        doc = json.loads(response.content)
        detail = doc.get("detail") if isinstance(doc, dict) else None
    except ValueError:
        detail = None
    if isinstance(detail, str):
        return detail
    text = response.content.decode(errors="replace").strip()
    return text[:500] or f"HTTP {int(response.status_code)}"


def _check(response: httpx.Response | Response[Any]) -> None:
    if int(response.status_code) >= 400:
        raise DiracxHTTPError(int(response.status_code), _detail(response))


def _parse(model: type[M], response: Response[Any]) -> M:
    _check(response)
    return model.model_validate_json(response.content)


class AsyncDiracxClient:
    """One connection to a DiracX service."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self._client = AuthenticatedClient(
            base_url=self.url,
            token=token or "",
            headers={VERSION_HEADER: __version__},
            timeout=httpx.Timeout(timeout, connect=10.0),
            raise_on_unexpected_status=False,
        )
        self._http = self._client.get_async_httpx_client()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, call: Any, **kwargs: Any) -> Response[Any]:
        try:
            return await call(client=self._client, **kwargs)
        except httpx.TransportError as exc:
            raise DiracxError(f"cannot reach the DiracX service at {self.url}: {exc}") from exc

    # -- pipelines and jobs ----------------------------------------------------------

    async def submit_pipeline(self, submission: PipelineSubmission) -> PipelineInfo:
        body = GeneratedSubmission.from_dict(submission.model_dump(mode="json"))
        response = await self._call(submit_pipeline_api.asyncio_detailed, body=body)
        return _parse(SubmitResponse, response).pipeline

    async def get_pipeline(self, pipeline_id: int) -> PipelineInfo:
        response = await self._call(get_pipeline_api.asyncio_detailed, pipeline_id=pipeline_id)
        return _parse(PipelineInfo, response)

    async def pipeline_events(self, pipeline_id: int, *, after: int, wait: float) -> PipelineEvents:
        response = await self._call(
            pipeline_events_api.asyncio_detailed, pipeline_id=pipeline_id, after=after, wait=wait
        )
        return _parse(PipelineEvents, response)

    async def get_job(self, job_id: int) -> JobInfo:
        response = await self._call(get_job_api.asyncio_detailed, job_id=job_id)
        return _parse(JobInfo, response)

    async def get_realization(self, rref: str) -> RealizationInfo:
        response = await self._call(get_realization_api.asyncio_detailed, rref=rref)
        return _parse(RealizationInfo, response)

    async def list_realizations(self, dref: str) -> list[RealizationInfo]:
        response = await self._call(list_realizations_api.asyncio_detailed, dref=dref)
        _check(response)
        return [RealizationInfo.model_validate(r) for r in json.loads(response.content)]

    async def metadata(self) -> Metadata:
        return _parse(Metadata, await self._call(get_metadata_api.asyncio_detailed))

    # -- blobs -----------------------------------------------------------------------

    async def missing_blobs(self, digests: Sequence[str]) -> list[str]:
        response = await self._call(
            missing_blobs_api.asyncio_detailed, body=MissingBlobsRequest(digests=list(digests))
        )
        _check(response)
        return list(json.loads(response.content)["missing"])

    async def upload_blob(self, digest: str, data: bytes | Path) -> None:
        """Send one blob; the service checks that it hashes to *digest*."""
        content: bytes | AsyncIterator[bytes] = (
            data if isinstance(data, bytes) else _read_chunks(data)
        )
        try:
            response = await self._http.put(
                f"/api/blobs/{digest}",
                content=content,
                headers={"Content-Type": "application/octet-stream"},
            )
        except httpx.TransportError as exc:
            raise DiracxError(f"cannot reach the DiracX service at {self.url}: {exc}") from exc
        if response.status_code >= 400:
            where = (
                f" (from {data}: did the file change while the pipeline was sent?)"
                if isinstance(data, Path)
                else ""
            )
            raise DiracxHTTPError(response.status_code, _detail(response) + where)

    async def download_blob(self, digest: str, store: LocalStore) -> None:
        """Stream one blob into *store*, which verifies its digest before keeping it."""
        try:
            async with self._http.stream("GET", f"/api/blobs/{digest}") as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise DiracxHTTPError(response.status_code, _detail(response))
                with store.writer() as writer:
                    async for chunk in response.aiter_bytes(CHUNK_SIZE):
                        writer.write(chunk)
                    try:
                        writer.commit(digest)
                    except CorruptObjectError as exc:
                        raise CorruptObjectError(
                            f"download of blob {digest} was corrupt: {exc}"
                        ) from None
        except httpx.TransportError as exc:
            raise DiracxError(f"cannot reach the DiracX service at {self.url}: {exc}") from exc


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            yield chunk
