"""The hand-written layer over the generated client.

It sends the bearer token and ``DiracX-Client-Version`` on every request,
turns error responses into ``DiracxHTTPError`` with the server's message, and
returns diracx.core models. Blobs are streamed with the generated client's
httpx connection, so large files never sit whole in memory.

Every failure is a ``DiracxError`` with a message for the user: an error answer
(``DiracxHTTPError``, raised by a response hook before the generated code tries
to parse the body, which may not even be JSON), a service that cannot be reached,
or an answer that is not what a DiracX service sends (a proxy's login page...).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from diracx.client._generated.api.blobs import missing_blobs as missing_blobs_api
from diracx.client._generated.api.jobs import get_job as get_job_api
from diracx.client._generated.api.pipelines import get_pipeline as get_pipeline_api
from diracx.client._generated.api.pipelines import pipeline_events as pipeline_events_api
from diracx.client._generated.api.pipelines import submit_pipeline as submit_pipeline_api
from diracx.client._generated.api.realizations import get_realization as get_realization_api
from diracx.client._generated.api.realizations import list_realizations as list_realizations_api
from diracx.client._generated.api.well_known import get_metadata as get_metadata_api
from diracx.client._generated.client import AuthenticatedClient, Client
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
from diracx.core.store import CHUNK_SIZE, LocalStore, hash_file
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


async def _raise_for_status(response: httpx.Response) -> None:
    """Response hook: an error answer becomes a DiracxHTTPError before anyone parses it."""
    if response.is_redirect:
        where = response.headers.get("location", "elsewhere")
        raise DiracxHTTPError(
            response.status_code,
            f"the service redirects {response.request.url.path} to {where}: "
            "use the service's final address (DIRACX_URL)",
        )
    if response.status_code >= 400:
        await response.aread()
        raise DiracxHTTPError(response.status_code, _detail(response))


class AsyncDiracxClient:
    """One connection to a DiracX service."""

    def __init__(self, url: str, token: str | None, *, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        token = (token or "").strip()  # a token read from a file often ends with a newline
        headers = {VERSION_HEADER: __version__}
        if token:  # without one, no Authorization header at all ("Bearer " is not valid HTTP)
            headers["Authorization"] = f"Bearer {token}"
        # One httpx client for the generated functions and the blob transfers alike.
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers=headers,
            # Plain HTTP (the embedded engine on loopback) needs no certificates: loading
            # them costs more than a whole request.
            verify=not self.url.startswith("http://"),
            timeout=httpx.Timeout(timeout, connect=10.0),
            event_hooks={"response": [_raise_for_status]},
        )
        # The generated functions only use the client to reach self._http.
        self._client: AuthenticatedClient | Client = (
            AuthenticatedClient(base_url=self.url, token=token, raise_on_unexpected_status=False)
            if token
            else Client(base_url=self.url, raise_on_unexpected_status=False)
        )
        self._client.set_async_httpx_client(self._http)

    async def aclose(self) -> None:
        await self._http.aclose()

    def _transport_error(self, exc: httpx.TransportError) -> DiracxError:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            message = f"cannot reach the DiracX service at {self.url}: {reason}"
        elif isinstance(exc, httpx.TimeoutException):
            message = f"the DiracX service at {self.url} did not answer in time ({reason})"
        else:
            message = f"the connection to the DiracX service at {self.url} failed: {reason}"
        return DiracxError(message)

    def _unexpected(self, exc: Exception) -> DiracxError:
        return DiracxError(
            f"unexpected answer from {self.url}: is it a DiracX service (DIRACX_URL)? "
            f"({type(exc).__name__}: {str(exc)[:200]})"
        )

    async def _call(self, call: Any, **kwargs: Any) -> Response[Any]:
        try:
            return await call(client=self._client, **kwargs)
        except DiracxError:
            raise
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        except (ValueError, KeyError, TypeError) as exc:  # the generated code's parsing
            raise self._unexpected(exc) from exc

    def _parse(self, model: type[M], response: Response[Any]) -> M:
        _check(response)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise self._unexpected(exc) from exc

    def _json(self, response: Response[Any]) -> Any:
        _check(response)
        try:
            return json.loads(response.content)
        except ValueError as exc:
            raise self._unexpected(exc) from exc

    # -- pipelines and jobs ----------------------------------------------------------

    async def submit_pipeline(self, submission: PipelineSubmission) -> PipelineInfo:
        body = GeneratedSubmission.from_dict(submission.model_dump(mode="json"))
        response = await self._call(submit_pipeline_api.asyncio_detailed, body=body)
        return self._parse(SubmitResponse, response).pipeline

    async def get_pipeline(self, pipeline_id: int) -> PipelineInfo:
        response = await self._call(get_pipeline_api.asyncio_detailed, pipeline_id=pipeline_id)
        return self._parse(PipelineInfo, response)

    async def pipeline_events(self, pipeline_id: int, *, after: int, wait: float) -> PipelineEvents:
        response = await self._call(
            pipeline_events_api.asyncio_detailed, pipeline_id=pipeline_id, after=after, wait=wait
        )
        return self._parse(PipelineEvents, response)

    async def get_job(self, job_id: int) -> JobInfo:
        response = await self._call(get_job_api.asyncio_detailed, job_id=job_id)
        return self._parse(JobInfo, response)

    async def get_realization(self, rref: str) -> RealizationInfo:
        response = await self._call(get_realization_api.asyncio_detailed, rref=rref)
        return self._parse(RealizationInfo, response)

    async def list_realizations(self, dref: str) -> list[RealizationInfo]:
        response = await self._call(list_realizations_api.asyncio_detailed, dref=dref)
        try:
            return [RealizationInfo.model_validate(r) for r in self._json(response)]
        except (ValidationError, TypeError) as exc:
            raise self._unexpected(exc) from exc

    async def metadata(self) -> Metadata:
        return self._parse(Metadata, await self._call(get_metadata_api.asyncio_detailed))

    # -- blobs -----------------------------------------------------------------------

    async def missing_blobs(self, digests: Sequence[str]) -> list[str]:
        response = await self._call(
            missing_blobs_api.asyncio_detailed, body=MissingBlobsRequest(digests=list(digests))
        )
        try:
            return list(self._json(response)["missing"])
        except (KeyError, TypeError) as exc:
            raise self._unexpected(exc) from exc

    async def upload_blob(self, digest: str, data: bytes | Path) -> None:
        """Send one blob; the service checks that it hashes to *digest*."""
        content: bytes | AsyncIterator[bytes] = (
            data if isinstance(data, bytes) else _read_chunks(data)
        )
        try:
            await self._http.put(
                f"/api/blobs/{digest}",
                content=content,
                headers={"Content-Type": "application/octet-stream"},
            )
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        except DiracxHTTPError as exc:
            if isinstance(data, Path) and exc.status == 400:
                # refused for its content? then say which file, if it no longer matches
                now, _ = await asyncio.to_thread(hash_file, data)
                if now != digest:
                    where = (
                        f" (from {data}, which now hashes to {now}: "
                        "did the file change while the pipeline was sent?)"
                    )
                    raise DiracxHTTPError(exc.status, exc.detail + where) from None
            raise

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
            raise self._transport_error(exc) from exc


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            yield chunk
