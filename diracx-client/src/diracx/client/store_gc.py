"""Pins and garbage collection (``/api/store/pins``, ``/api/store/gc``) over an
:class:`AsyncDiracxClient`'s connection."""

from __future__ import annotations

import httpx
from pydantic import TypeAdapter, ValidationError

from diracx.client._generated.api.realizations import list_pins as list_pins_api
from diracx.client._generated.api.realizations import pin_realization as pin_api
from diracx.client._generated.api.realizations import unpin_realization as unpin_api
from diracx.client._generated.models import PinRequest as GeneratedPinRequest
from diracx.client.client import AsyncDiracxClient
from diracx.core.gc import GCReport, GCRequest, PinInfo

# a collection reads every tree manifest and lists the whole store: no read timeout
SLOW = httpx.Timeout(None, connect=10.0)
_pins = TypeAdapter(list[PinInfo])


class GCClient:
    """Name realizations (pins) and collect what nothing reaches."""

    def __init__(self, client: AsyncDiracxClient) -> None:
        self._client = client

    async def pin(self, name: str, rref: str) -> PinInfo:
        c = self._client
        body = GeneratedPinRequest(rref=rref)
        return c._parse(PinInfo, await c._call(pin_api.asyncio_detailed, name=name, body=body))

    async def unpin(self, name: str) -> PinInfo:
        c = self._client
        return c._parse(PinInfo, await c._call(unpin_api.asyncio_detailed, name=name))

    async def pins(self) -> list[PinInfo]:
        c = self._client
        response = await c._call(list_pins_api.asyncio_detailed)
        try:
            return _pins.validate_python(c._json(response))
        except ValidationError as exc:
            raise c._unexpected(exc) from exc

    async def collect(self, request: GCRequest) -> GCReport:
        c = self._client
        try:
            response = await c._http.post(
                "/api/store/gc", json=request.model_dump(mode="json"), timeout=SLOW
            )
        except httpx.TransportError as exc:
            raise c._transport_error(exc) from exc
        try:
            return GCReport.model_validate_json(response.content)
        except ValidationError as exc:
            raise c._unexpected(exc) from exc
