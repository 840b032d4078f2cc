from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.pin_info import PinInfo
from ...models.pin_request import PinRequest
from ...models.validation_error_response import ValidationErrorResponse
from ...types import Response


def _get_kwargs(
    name: str,
    *,
    body: PinRequest,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "put",
        "url": "/api/store/pins/{name}".format(
            name=quote(str(name), safe=""),
        ),
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorResponse | PinInfo | ValidationErrorResponse | None:
    if response.status_code == 200:
        response_200 = PinInfo.from_dict(response.json())

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

    if response.status_code == 404:
        response_404 = ErrorResponse.from_dict(response.json())

        return response_404

    if response.status_code == 422:
        response_422 = ValidationErrorResponse.from_dict(response.json())

        return response_422

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[ErrorResponse | PinInfo | ValidationErrorResponse]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    name: str,
    *,
    client: AuthenticatedClient,
    body: PinRequest,
) -> Response[ErrorResponse | PinInfo | ValidationErrorResponse]:
    """Pin Realization

     Name a realization of the VO: it and its whole closure are never garbage
    collected. A name that named another realization now names this one.

    Args:
        name (str): 1-255 letters, digits, '.', '_', '-', ':' or '@', starting with a letter or
            digit
        body (PinRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | PinInfo | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        name=name,
        body=body,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    name: str,
    *,
    client: AuthenticatedClient,
    body: PinRequest,
) -> ErrorResponse | PinInfo | ValidationErrorResponse | None:
    """Pin Realization

     Name a realization of the VO: it and its whole closure are never garbage
    collected. A name that named another realization now names this one.

    Args:
        name (str): 1-255 letters, digits, '.', '_', '-', ':' or '@', starting with a letter or
            digit
        body (PinRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | PinInfo | ValidationErrorResponse
    """

    return sync_detailed(
        name=name,
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    name: str,
    *,
    client: AuthenticatedClient,
    body: PinRequest,
) -> Response[ErrorResponse | PinInfo | ValidationErrorResponse]:
    """Pin Realization

     Name a realization of the VO: it and its whole closure are never garbage
    collected. A name that named another realization now names this one.

    Args:
        name (str): 1-255 letters, digits, '.', '_', '-', ':' or '@', starting with a letter or
            digit
        body (PinRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | PinInfo | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        name=name,
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    name: str,
    *,
    client: AuthenticatedClient,
    body: PinRequest,
) -> ErrorResponse | PinInfo | ValidationErrorResponse | None:
    """Pin Realization

     Name a realization of the VO: it and its whole closure are never garbage
    collected. A name that named another realization now names this one.

    Args:
        name (str): 1-255 letters, digits, '.', '_', '-', ':' or '@', starting with a letter or
            digit
        body (PinRequest):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | PinInfo | ValidationErrorResponse
    """

    return (
        await asyncio_detailed(
            name=name,
            client=client,
            body=body,
        )
    ).parsed
