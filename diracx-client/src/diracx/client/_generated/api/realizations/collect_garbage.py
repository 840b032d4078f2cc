from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.gc_report import GCReport
from ...models.gc_request import GCRequest
from ...models.validation_error_response import ValidationErrorResponse
from ...types import Response


def _get_kwargs(
    *,
    body: GCRequest,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/store/gc",
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorResponse | GCReport | ValidationErrorResponse | None:
    if response.status_code == 200:
        response_200 = GCReport.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = ErrorResponse.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = ErrorResponse.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = ErrorResponse.from_dict(response.json())

        return response_403

    if response.status_code == 422:
        response_422 = ValidationErrorResponse.from_dict(response.json())

        return response_422

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[ErrorResponse | GCReport | ValidationErrorResponse]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    body: GCRequest,
) -> Response[ErrorResponse | GCReport | ValidationErrorResponse]:
    """Collect Garbage

     Remove the realizations and blobs that no pin, no pipeline younger than
    ``keep_days`` and no live job reaches, whatever their VO (with ``dry_run``: only say
    what would go). Objects younger than ``grace_seconds`` always stay; with
    ``target_size``, the oldest go first until the store holds at most that many bytes.
    Needs the ServiceAdministrator property.

    Args:
        body (GCRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | GCReport | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    body: GCRequest,
) -> ErrorResponse | GCReport | ValidationErrorResponse | None:
    """Collect Garbage

     Remove the realizations and blobs that no pin, no pipeline younger than
    ``keep_days`` and no live job reaches, whatever their VO (with ``dry_run``: only say
    what would go). Objects younger than ``grace_seconds`` always stay; with
    ``target_size``, the oldest go first until the store holds at most that many bytes.
    Needs the ServiceAdministrator property.

    Args:
        body (GCRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | GCReport | ValidationErrorResponse
    """

    return sync_detailed(
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    body: GCRequest,
) -> Response[ErrorResponse | GCReport | ValidationErrorResponse]:
    """Collect Garbage

     Remove the realizations and blobs that no pin, no pipeline younger than
    ``keep_days`` and no live job reaches, whatever their VO (with ``dry_run``: only say
    what would go). Objects younger than ``grace_seconds`` always stay; with
    ``target_size``, the oldest go first until the store holds at most that many bytes.
    Needs the ServiceAdministrator property.

    Args:
        body (GCRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | GCReport | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    body: GCRequest,
) -> ErrorResponse | GCReport | ValidationErrorResponse | None:
    """Collect Garbage

     Remove the realizations and blobs that no pin, no pipeline younger than
    ``keep_days`` and no live job reaches, whatever their VO (with ``dry_run``: only say
    what would go). Objects younger than ``grace_seconds`` always stay; with
    ``target_size``, the oldest go first until the store holds at most that many bytes.
    Needs the ServiceAdministrator property.

    Args:
        body (GCRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | GCReport | ValidationErrorResponse
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
        )
    ).parsed
