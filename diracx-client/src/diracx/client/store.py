"""The store routes (``/api/store``), over an :class:`AsyncDiracxClient`'s connection."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from diracx.client._generated.api.realizations import realization_provenance as provenance_api
from diracx.client._generated.api.realizations import store_closure as closure_api
from diracx.client._generated.api.realizations import store_import as import_api
from diracx.client._generated.api.realizations import (
    store_list_realizations as list_api,
)
from diracx.client._generated.models import ClosureImport as GeneratedImport
from diracx.client._generated.models import ClosureRequest as GeneratedClosureRequest
from diracx.client.client import AsyncDiracxClient
from diracx.core.closure import (
    Closure,
    ClosureRealization,
    ImportResult,
    Provenance,
    SizeReport,
    VerifyReport,
)
from diracx.core.models import RealizationInfo

# verify reads every byte of the store, sizes every tree manifest: no read timeout
SLOW = httpx.Timeout(None, connect=10.0)
_infos = TypeAdapter(list[RealizationInfo])


class StoreClient:
    """Inspect the store, fetch closures, import them, verify the store."""

    def __init__(self, client: AsyncDiracxClient) -> None:
        self._client = client

    async def list_realizations(
        self,
        *,
        name: str | None = None,
        dref: str | None = None,
        prefix: str | None = None,
        limit: int = 100,
    ) -> list[RealizationInfo]:
        c = self._client
        response = await c._call(
            list_api.asyncio_detailed, name=name, dref=dref, prefix=prefix, limit=limit
        )
        try:
            return _infos.validate_python(c._json(response))
        except ValidationError as exc:
            raise c._unexpected(exc) from exc

    async def provenance(self, rref: str) -> Provenance:
        c = self._client
        return c._parse(Provenance, await c._call(provenance_api.asyncio_detailed, rref=rref))

    async def closure(self, rrefs: Sequence[str]) -> Closure:
        c = self._client
        body = GeneratedClosureRequest.from_dict({"rrefs": list(rrefs)})
        return c._parse(Closure, await c._call(closure_api.asyncio_detailed, body=body))

    async def import_closure(self, records: Sequence[ClosureRealization]) -> ImportResult:
        c = self._client
        doc = {"realizations": [r.model_dump(mode="json") for r in records]}
        body = GeneratedImport.from_dict(doc)
        return c._parse(ImportResult, await c._call(import_api.asyncio_detailed, body=body))

    async def sizes(self, rrefs: Sequence[str] = ()) -> SizeReport:
        return await self._slow_post("/api/store/sizes", SizeReport, {"rrefs": list(rrefs)})

    async def verify(self) -> VerifyReport:
        return await self._slow_post("/api/store/verify", VerifyReport, None)

    async def _slow_post(self, path: str, model: type[Any], body: Any) -> Any:
        c = self._client
        try:
            response = await c._http.post(path, json=body, timeout=SLOW)
        except httpx.TransportError as exc:
            raise c._transport_error(exc) from exc
        try:
            result: BaseModel = model.model_validate_json(response.content)
        except ValidationError as exc:
            raise c._unexpected(exc) from exc
        return result
