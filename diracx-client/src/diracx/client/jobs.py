"""The jobs API (``/api/jobs/search``, ``summary``, ``status``, ``heartbeat``, history,
delete, reschedule) over an :class:`AsyncDiracxClient`'s connection."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from diracx.client._generated.api.jobs import add_heartbeat as add_heartbeat_api
from diracx.client._generated.api.jobs import delete_job as delete_job_api
from diracx.client._generated.api.jobs import get_job_history as get_job_history_api
from diracx.client._generated.api.jobs import reschedule_job as reschedule_job_api
from diracx.client._generated.api.jobs import search_jobs as search_jobs_api
from diracx.client._generated.api.jobs import set_job_statuses as set_job_statuses_api
from diracx.client._generated.api.jobs import summarize_jobs as summarize_jobs_api
from diracx.client._generated.models import AddHeartbeatBodyType0, SetJobStatusesBody
from diracx.client._generated.models import JobSearchRequest as GeneratedSearchRequest
from diracx.client._generated.models import JobSummaryRequest as GeneratedSummaryRequest
from diracx.client.client import AsyncDiracxClient
from diracx.core.job_search import (
    HeartbeatData,
    JobActionResponse,
    JobHeartbeatResponse,
    JobSearchPage,
    JobSearchRequest,
    JobStatusUpdate,
    JobStatusUpdateResponse,
    JobSummaryRequest,
)
from diracx.core.models import StatusHistoryEntry

_rows = TypeAdapter(list[dict[str, Any]])
_history = TypeAdapter(list[StatusHistoryEntry])
_RANGE = re.compile(r"^jobs (?:(\d+)-(\d+)|\*)/(\d+)$")


class JobsClient:
    """Search, count and act on jobs."""

    def __init__(self, client: AsyncDiracxClient) -> None:
        self._client = client

    def _rows(self, response: Any) -> list[dict[str, Any]]:
        try:
            return _rows.validate_python(self._client._json(response))
        except ValidationError as exc:
            raise self._client._unexpected(exc) from exc

    async def search(
        self, request: JobSearchRequest, *, page: int = 1, per_page: int = 100
    ) -> JobSearchPage:
        """One page of the matching jobs, with the number of matches (Content-Range)."""
        c = self._client
        body = GeneratedSearchRequest.from_dict(request.model_dump(mode="json", exclude_none=True))
        response = await c._call(
            search_jobs_api.asyncio_detailed, body=body, page=page, per_page=per_page
        )
        rows = self._rows(response)
        match = _RANGE.match(response.headers.get("content-range", ""))
        if match is None:
            raise c._unexpected(ValueError("no Content-Range header in a search's answer"))
        first = int(match.group(1) or 0)
        return JobSearchPage(jobs=rows, total=int(match.group(3)), first=first)

    async def summary(self, request: JobSummaryRequest) -> list[dict[str, Any]]:
        c = self._client
        body = GeneratedSummaryRequest.from_dict(request.model_dump(mode="json"))
        return self._rows(await c._call(summarize_jobs_api.asyncio_detailed, body=body))

    async def set_status(self, changes: Mapping[int, JobStatusUpdate]) -> JobStatusUpdateResponse:
        c = self._client
        body = SetJobStatusesBody.from_dict(
            {str(k): v.model_dump(mode="json", exclude_none=True) for k, v in changes.items()}
        )
        response = await c._call(set_job_statuses_api.asyncio_detailed, body=body)
        return c._parse(JobStatusUpdateResponse, response)

    async def history(self, job_id: int) -> list[StatusHistoryEntry]:
        c = self._client
        response = await c._call(get_job_history_api.asyncio_detailed, job_id=job_id)
        try:
            return _history.validate_python(c._json(response))
        except ValidationError as exc:
            raise c._unexpected(exc) from exc

    async def delete(self, job_id: int) -> JobActionResponse:
        c = self._client
        response = await c._call(delete_job_api.asyncio_detailed, job_id=job_id)
        return c._parse(JobActionResponse, response)

    async def reschedule(self, job_id: int) -> JobActionResponse:
        c = self._client
        response = await c._call(reschedule_job_api.asyncio_detailed, job_id=job_id)
        return c._parse(JobActionResponse, response)

    async def heartbeat(
        self, beats: Mapping[int, HeartbeatData] | Sequence[int]
    ) -> JobHeartbeatResponse:
        """Report Running jobs alive: their ids, or DIRAC's ``{id: {"LoadAverage": ...}}``."""
        c = self._client
        body: AddHeartbeatBodyType0 | list[int]
        if isinstance(beats, Mapping):
            body = AddHeartbeatBodyType0.from_dict({str(k): dict(v) for k, v in beats.items()})
        else:
            body = list(beats)
        response = await c._call(add_heartbeat_api.asyncio_detailed, body=body)
        return c._parse(JobHeartbeatResponse, response)
