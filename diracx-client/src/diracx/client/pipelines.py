"""Pipelines as a list, and what a user does to one (``GET /api/pipelines``, ``POST
/api/pipelines/{id}/cancel`` and ``/retry``) over an :class:`AsyncDiracxClient`'s
connection."""

from __future__ import annotations

from diracx.client._generated.api.pipelines import cancel_pipeline as cancel_pipeline_api
from diracx.client._generated.api.pipelines import list_pipelines as list_pipelines_api
from diracx.client._generated.api.pipelines import retry_pipeline as retry_pipeline_api
from diracx.client._generated.models import ListPipelinesStatusType0
from diracx.client._generated.types import UNSET
from diracx.client.client import AsyncDiracxClient
from diracx.core.models import KillResponse, PipelinePage, PipelineState, RetryResponse


class PipelinesClient:
    """List, cancel and retry pipelines."""

    def __init__(self, client: AsyncDiracxClient) -> None:
        self._client = client

    async def list(
        self,
        *,
        limit: int = 50,
        cursor: int | None = None,
        owner: str | None = None,
        status: PipelineState | None = None,
    ) -> PipelinePage:
        """A page of the VO's pipelines, newest first; the page's ``next_cursor`` as
        *cursor* gives the next one."""
        c = self._client
        response = await c._call(
            list_pipelines_api.asyncio_detailed,
            limit=limit,
            cursor=UNSET if cursor is None else cursor,
            owner=UNSET if owner is None else owner,
            status=UNSET if status is None else ListPipelinesStatusType0(status),
        )
        return c._parse(PipelinePage, response)

    async def cancel(self, pipeline_id: int) -> KillResponse:
        """Kill every live job of a pipeline (a 409 DiracxHTTPError if none is live)."""
        c = self._client
        response = await c._call(cancel_pipeline_api.asyncio_detailed, pipeline_id=pipeline_id)
        return c._parse(KillResponse, response)

    async def retry(self, pipeline_id: int) -> RetryResponse:
        """Reschedule a pipeline's Failed and Killed jobs (a 409 DiracxHTTPError, with the
        reasons, if none can be)."""
        c = self._client
        response = await c._call(retry_pipeline_api.asyncio_detailed, pipeline_id=pipeline_id)
        return c._parse(RetryResponse, response)
