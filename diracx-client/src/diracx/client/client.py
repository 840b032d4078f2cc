"""The hand-written layer over the generated client.

It sends the bearer token and ``DiracX-Client-Version`` on every request,
turns error responses into ``DiracxHTTPError`` with the server's message, and
returns diracx.core models. Blobs are streamed, so large files never sit whole
in memory; they travel as the service's upload plans say: to the service itself
(local store), or to the object store through presigned URLs (S3 store), which
get no credentials. Downloads follow the service's redirect to the object store,
and every download is verified against its digest as it is streamed.

Every failure is a ``DiracxError`` with a message for the user: an error answer
(``DiracxHTTPError``, raised by a response hook before the generated code tries
to parse the body, which may not even be JSON), a service that cannot be reached,
or an answer that is not what a DiracX service sends (a proxy's login page...).

The token comes from a ``TokenProvider``: a fixed token (``DIRACX_TOKEN``, the embedded
engine's), or the login stored by ``dirac login`` (``diracx.client.tokens``), which is
refreshed before it expires and once more when the service answers 401.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from diracx.client._generated.api.blobs import missing_blobs as missing_blobs_api
from diracx.client._generated.api.jobs import get_job as get_job_api
from diracx.client._generated.api.jobs import kill_job as kill_job_api
from diracx.client._generated.api.pipelines import get_pipeline as get_pipeline_api
from diracx.client._generated.api.pipelines import kill_pipeline as kill_pipeline_api
from diracx.client._generated.api.pipelines import pipeline_events as pipeline_events_api
from diracx.client._generated.api.realizations import get_realization as get_realization_api
from diracx.client._generated.api.realizations import list_realizations as list_realizations_api
from diracx.client._generated.api.well_known import get_metadata as get_metadata_api
from diracx.client._generated.client import AuthenticatedClient, Client
from diracx.client._generated.models import MissingBlobsRequest
from diracx.client._generated.types import Response
from diracx.client.auth import USERINFO_PATH, UserInfo, jwt_expiry
from diracx.core.derivation import PipelineSubmission
from diracx.core.exceptions import CorruptObjectError, DiracxError, ServiceUnavailableError
from diracx.core.matching import PipelinePlan
from diracx.core.models import (
    JobInfo,
    KillResponse,
    Metadata,
    MultipartUpload,
    PipelineEvents,
    PipelineInfo,
    RealizationInfo,
    SingleUpload,
    SubmitResponse,
    UploadPlans,
)
from diracx.core.store import CHUNK_SIZE, LocalStore, hash_file
from diracx.core.version import __version__

VERSION_HEADER = "DiracX-Client-Version"
UPLOAD_PLAN_BATCH = 10_000  # blobs per POST /api/blobs/uploads
PART_CONCURRENCY = 4  # parts of one multipart upload sent at once
# The least speed at which the service is expected to hash a blob it completes
COMPLETE_BYTES_PER_SECOND = 10 * 1024 * 1024
# A request extension: this request may be answered by a redirect to the object store
BLOB_REDIRECT = "diracx.blob_redirect"
# Request extensions of the bearer auth: a 401 answer is retried with a renewed token (the
# response hook lets it through), and what to tell the user when a 401 is final
RENEW_ON_401 = "diracx.renew_on_401"
AUTH_HINT = "diracx.auth_hint"
UploadPlan = SingleUpload | MultipartUpload
M = TypeVar("M", bound=BaseModel)


def submission_body(
    submission: PipelineSubmission, secrets: Mapping[str, str] | None = None
) -> bytes:
    """The JSON body of a submission, serialized by pydantic in one pass, its defaults
    left out (the service fills them in: a DRef does not depend on them); *secrets*
    (name -> value) in clear, as the service needs them."""
    body = submission.model_dump_json(exclude={"secrets"}, exclude_defaults=True)
    if not secrets:
        return body.encode()
    doc = json.loads(body)
    doc["secrets"] = dict(secrets)
    return json.dumps(doc).encode()


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


def _unauthorized(response: httpx.Response) -> DiracxHTTPError:
    """A final 401, with what the user can do about it."""
    hint = response.request.extensions.get(AUTH_HINT)
    detail = _detail(response)
    return DiracxHTTPError(401, f"{hint} (the service said: {detail})" if hint else detail)


async def _raise_for_status(response: httpx.Response) -> None:
    """Response hook: an error answer becomes a DiracxHTTPError before anyone parses it."""
    if response.status_code == 307 and response.request.extensions.get(BLOB_REDIRECT):
        return  # a blob download sent to the object store (a presigned URL)
    if response.status_code == 401:
        if response.request.extensions.get(RENEW_ON_401):
            return  # the bearer auth renews the token and sends the request again
        await response.aread()
        raise _unauthorized(response)
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


class TokenProvider(Protocol):
    """Where the bearer token of each request comes from."""

    # whether renew() can give a new token after a 401 (a stored login can refresh)
    renewable: bool

    async def token(self) -> str | None:
        """The token to send now (None: send none); may refresh an expiring one."""

    async def renew(self, rejected: str) -> str | None:
        """A token to replace *rejected*, which the service refused (401); None: give up."""

    def hint(self, sent: str | None) -> str | None:
        """What to tell the user when the service refuses a request that carried *sent*."""


class StaticToken:
    """A fixed token (``DIRACX_TOKEN``, the embedded engine's): never renewed."""

    renewable = False

    def __init__(self, token: str | None) -> None:
        # a token read from a file often ends with a newline; an empty one is none at all
        self._token = (token or "").strip() or None

    async def token(self) -> str | None:
        return self._token

    async def renew(self, rejected: str) -> str | None:
        return None

    def hint(self, sent: str | None) -> str | None:
        return None


def _replayable(request: httpx.Request) -> bool:
    """Whether *request* can be sent again (its body is bytes, not a stream being read)."""
    return isinstance(request.stream, httpx.ByteStream)


class BearerAuth(httpx.Auth):
    """Sends the provider's token; on a 401, renews it once and sends the request again."""

    def __init__(self, provider: TokenProvider) -> None:
        self.provider = provider

    def _authorize(self, request: httpx.Request, token: str | None) -> None:
        # without a token, no Authorization header at all ("Bearer " is not valid HTTP)
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        else:
            request.headers.pop("Authorization", None)
        hint = self.provider.hint(token)
        if hint:
            request.extensions = {**request.extensions, AUTH_HINT: hint}

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.provider.token()
        self._authorize(request, token)
        retry = bool(token) and self.provider.renewable and _replayable(request)
        if retry:
            request.extensions = {**request.extensions, RENEW_ON_401: True}
        response = yield request
        if not retry or response.status_code != 401:
            return
        assert token is not None
        request.extensions = {k: v for k, v in request.extensions.items() if k != RENEW_ON_401}
        renewed = await self.provider.renew(token)
        if not renewed or renewed == token:
            await response.aread()
            raise _unauthorized(response)
        self._authorize(request, renewed)
        yield request


class AsyncDiracxClient:
    """One connection to a DiracX service."""

    def __init__(
        self, url: str, token: str | TokenProvider | None, *, timeout: float = 60.0
    ) -> None:
        self.url = url.rstrip("/")
        self.tokens: TokenProvider = (
            token if token is not None and not isinstance(token, str) else StaticToken(token)
        )
        # One httpx client for the generated functions and the blob transfers alike.
        self._http = httpx.AsyncClient(
            base_url=self.url,
            headers={VERSION_HEADER: __version__},
            auth=BearerAuth(self.tokens),
            # Plain HTTP (the embedded engine on loopback) needs no certificates: loading
            # them costs more than a whole request.
            verify=not self.url.startswith("http://"),
            timeout=httpx.Timeout(timeout, connect=10.0),
            event_hooks={"response": [_raise_for_status]},
        )
        # The generated functions only use the client to reach self._http (and its auth).
        self._client: AuthenticatedClient | Client = Client(
            base_url=self.url, raise_on_unexpected_status=False
        )
        self._client.set_async_httpx_client(self._http)
        # Transfers to and from the object store (presigned URLs): no credentials, no hooks
        self._transfer = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10.0))

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._transfer.aclose()

    def _transport_error(self, exc: httpx.TransportError) -> ServiceUnavailableError:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
            message = f"cannot reach the DiracX service at {self.url}: {reason}"
        elif isinstance(exc, httpx.TimeoutException):
            message = f"the DiracX service at {self.url} did not answer in time ({reason})"
        else:
            message = f"the connection to the DiracX service at {self.url} failed: {reason}"
        return ServiceUnavailableError(f"{message} (try again once it is back)")

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

    def _parse(self, model: type[M], response: httpx.Response | Response[Any]) -> M:
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

    async def _post_json(self, path: str, body: bytes) -> httpx.Response:
        """POST a JSON body serialized already (the generated function would build its
        models from a dict and back again: twice the work for a large pipeline)."""
        try:
            return await self._http.post(
                path, content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc

    async def submit_pipeline(
        self, submission: PipelineSubmission, secrets: Mapping[str, str] | None = None
    ) -> PipelineInfo:
        """Submit; *secrets* (name -> value) travel in the body only, never anywhere else."""
        response = await self._post_json("/api/pipelines", submission_body(submission, secrets))
        return self._parse(SubmitResponse, response).pipeline

    async def plan_pipeline(self, submission: PipelineSubmission) -> PipelinePlan:
        """A dry run of *submission*: what would be reused or built, and why (no secrets
        are sent: planning does not need them)."""
        response = await self._post_json("/api/pipelines/plan", submission_body(submission))
        return self._parse(PipelinePlan, response)

    async def get_pipeline(self, pipeline_id: int) -> PipelineInfo:
        response = await self._call(get_pipeline_api.asyncio_detailed, pipeline_id=pipeline_id)
        return self._parse(PipelineInfo, response)

    async def pipeline_events(self, pipeline_id: int, *, after: int, wait: float) -> PipelineEvents:
        response = await self._call(
            pipeline_events_api.asyncio_detailed, pipeline_id=pipeline_id, after=after, wait=wait
        )
        return self._parse(PipelineEvents, response)

    async def kill_job(self, job_id: int) -> KillResponse:
        """Kill a live job (a 409 DiracxHTTPError if it already ended)."""
        response = await self._call(kill_job_api.asyncio_detailed, job_id=job_id)
        return self._parse(KillResponse, response)

    async def kill_pipeline(self, pipeline_id: int) -> KillResponse:
        """Kill every live job of a pipeline (a 409 DiracxHTTPError if none is live)."""
        response = await self._call(kill_pipeline_api.asyncio_detailed, pipeline_id=pipeline_id)
        return self._parse(KillResponse, response)

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

    async def request_json(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """A route without a generated function (an extension's, ``/api/...``): its JSON
        answer. Errors raise ``DiracxHTTPError`` with the service's message, as elsewhere."""
        try:
            response = await self._http.request(method, path, json=json, params=params)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        try:
            return response.json()
        except ValueError as exc:
            raise self._unexpected(exc) from exc

    async def userinfo(self) -> UserInfo:
        """Who this client's token stands for: user, VO, group, properties."""
        try:
            response = await self._http.get(USERINFO_PATH)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        try:
            return UserInfo.model_validate_json(response.content)
        except ValidationError as exc:
            raise self._unexpected(exc) from exc

    async def token_expiry(self) -> float | None:
        """When the token sent now expires (Unix time); None for a token that does not say
        (the embedded engine's) or no token at all."""
        token = await self.tokens.token()
        return jwt_expiry(token) if token else None

    # -- blobs -----------------------------------------------------------------------

    async def missing_blobs(self, digests: Sequence[str]) -> list[str]:
        response = await self._call(
            missing_blobs_api.asyncio_detailed, body=MissingBlobsRequest(digests=list(digests))
        )
        try:
            return list(self._json(response)["missing"])
        except (KeyError, TypeError) as exc:
            raise self._unexpected(exc) from exc

    async def plan_uploads(self, blobs: Sequence[tuple[str, int]]) -> list[UploadPlan]:
        """Upload plans for those of *blobs* (digest, size) that the service lacks."""
        plans: list[UploadPlan] = []
        for i in range(0, len(blobs), UPLOAD_PLAN_BATCH):
            batch = [{"digest": d, "size": n} for d, n in blobs[i : i + UPLOAD_PLAN_BATCH]]
            try:
                response = await self._http.post("/api/blobs/uploads", json=batch)
            except httpx.TransportError as exc:
                raise self._transport_error(exc) from exc
            try:
                plans += UploadPlans.model_validate_json(response.content).uploads
            except ValidationError as exc:
                raise self._unexpected(exc) from exc
        return plans

    async def upload_blob(self, digest: str, data: bytes | Path) -> None:
        """Send one blob (if the service lacks it); the store checks it hashes to *digest*."""
        size = (
            len(data) if isinstance(data, bytes) else (await asyncio.to_thread(data.stat)).st_size
        )
        for plan in await self.plan_uploads([(digest, size)]):
            await self.send_blob(plan, data)

    async def send_blob(self, plan: UploadPlan, data: bytes | Path) -> None:
        """Carry out one upload plan: one PUT, or the parts in parallel; then complete it."""
        try:
            if isinstance(plan, SingleUpload):
                body = _body(data, 0, plan.size)
                await self._put(plan.url, body, plan.headers, plan.size, plan.digest)
            else:
                await self._send_parts(plan, data)
            if plan.upload_id is not None:
                # the service reads the whole blob back to check it: give it time
                wait = max(self._http.timeout.read or 0.0, plan.size / COMPLETE_BYTES_PER_SECOND)
                await self._http.post(
                    f"/api/blobs/uploads/{plan.digest}/complete",
                    json={"upload_id": plan.upload_id},
                    timeout=httpx.Timeout(wait, connect=10.0),
                )
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        except DiracxHTTPError as exc:
            if isinstance(data, Path) and exc.status == 400:
                # refused for its content? then say which file, if it no longer matches
                now, _ = await asyncio.to_thread(hash_file, data)
                if now != plan.digest:
                    where = (
                        f" (from {data}, which now hashes to {now}: "
                        "did the file change while the pipeline was sent?)"
                    )
                    raise DiracxHTTPError(exc.status, exc.detail + where) from None
            raise

    async def _send_parts(self, plan: MultipartUpload, data: bytes | Path) -> None:
        limit = asyncio.Semaphore(PART_CONCURRENCY)

        async def send(number: int, url: str) -> None:
            start = (number - 1) * plan.part_size
            length = max(0, min(plan.part_size, plan.size - start))
            async with limit:
                await self._put(url, _body(data, start, length), {}, length, plan.digest)

        tasks = [asyncio.create_task(send(p.number, p.url)) for p in plan.parts]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:  # one part failed: the upload is void, stop the others
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise

    async def _put(
        self,
        url: str,
        content: bytes | AsyncIterator[bytes],
        headers: dict[str, str],
        length: int,
        digest: str,
    ) -> None:
        """PUT to where a plan says: a relative URL is the service (with the credentials;
        a file is streamed in chunks), an absolute one the object store (without them;
        S3 wants the length)."""
        if url.startswith("/"):
            await self._http.put(url, content=content, headers=headers)
            return
        try:
            response = await self._transfer.put(
                url, content=content, headers={**headers, "Content-Length": str(length)}
            )
        except httpx.TransportError as exc:
            raise DiracxError(
                f"cannot upload blob {digest} to the object store at {_origin(url)}: "
                f"{str(exc) or type(exc).__name__}"
            ) from exc
        if response.status_code >= 300:
            raise DiracxHTTPError(
                response.status_code,
                f"the object store refused blob {digest} (HTTP {response.status_code}): "
                f"{_detail(response)}",
            )

    async def download_blob(self, digest: str, store: LocalStore) -> None:
        """Stream one blob into *store*, which verifies its digest before keeping it.

        The service sends the bytes (local store) or redirects to a presigned URL of
        the object store, which is followed without the credentials.
        """
        location: str | None = None
        try:
            async with self._http.stream(
                "GET", f"/api/blobs/{digest}", extensions={BLOB_REDIRECT: True}
            ) as response:
                if response.status_code == 307:
                    location = response.headers.get("location")
                    if not location:
                        raise self._unexpected(ValueError("a redirect without a location"))
                else:
                    await _receive(digest, response, store)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if location is None:
            return
        try:
            async with self._transfer.stream("GET", location) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise DiracxHTTPError(
                        response.status_code,
                        f"the object store answered HTTP {response.status_code} for blob "
                        f"{digest}: {_detail(response)}",
                    )
                await _receive(digest, response, store)
        except httpx.TransportError as exc:
            raise DiracxError(
                f"cannot download blob {digest} from the object store at {_origin(location)}: "
                f"{str(exc) or type(exc).__name__}"
            ) from exc


async def _receive(digest: str, response: httpx.Response, store: LocalStore) -> None:
    """Write a response's body into *store*, verified against *digest* as it streams."""
    if response.status_code >= 400:
        await response.aread()
        raise DiracxHTTPError(response.status_code, _detail(response))
    with store.writer() as writer:
        async for chunk in response.aiter_bytes(CHUNK_SIZE):
            writer.write(chunk)
        try:
            writer.commit(digest)
        except CorruptObjectError as exc:
            raise CorruptObjectError(f"download of blob {digest} was corrupt: {exc}") from None


def _origin(url: str) -> str:
    """Scheme, host and port of *url*: never the query (a presigned URL's signature)."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


def _body(data: bytes | Path, start: int, length: int) -> bytes | AsyncIterator[bytes]:
    """Bytes [start, start + length) of *data*: a slice, or a file range read in chunks."""
    if isinstance(data, bytes):
        return data if (start, length) == (0, len(data)) else data[start : start + length]
    return _read_chunks(data, start, length)


async def _read_chunks(
    path: Path, start: int = 0, length: int | None = None
) -> AsyncIterator[bytes]:
    left = length
    with open(path, "rb") as f:
        f.seek(start)
        while left is None or left > 0:
            chunk = f.read(CHUNK_SIZE if left is None else min(CHUNK_SIZE, left))
            if not chunk:
                break
            if left is not None:
                left -= len(chunk)
            yield chunk
