from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.realization_info import RealizationInfo
from ...models.validation_error_response import ValidationErrorResponse
from ...types import Response


def _get_kwargs(
    dref: str,
) -> dict[str, Any]:

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/derivations/{dref}/realizations".format(
            dref=quote(str(dref), safe=""),
        ),
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorResponse | ValidationErrorResponse | list[RealizationInfo] | None:
    if response.status_code == 200:
        response_200 = []
        _response_200 = response.json()
        for response_200_item_data in _response_200:
            response_200_item = RealizationInfo.from_dict(response_200_item_data)

            response_200.append(response_200_item)

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
) -> Response[ErrorResponse | ValidationErrorResponse | list[RealizationInfo]]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    dref: str,
    *,
    client: AuthenticatedClient,
) -> Response[ErrorResponse | ValidationErrorResponse | list[RealizationInfo]]:
    """List Realizations

     The caller's VO's realizations of a derivation, oldest first (empty if it never
    built it).

    Args:
        dref (str): the derivation's DRef (64 hex digits)

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | ValidationErrorResponse | list[RealizationInfo]]
    """

    kwargs = _get_kwargs(
        dref=dref,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    dref: str,
    *,
    client: AuthenticatedClient,
) -> ErrorResponse | ValidationErrorResponse | list[RealizationInfo] | None:
    """List Realizations

     The caller's VO's realizations of a derivation, oldest first (empty if it never
    built it).

    Args:
        dref (str): the derivation's DRef (64 hex digits)

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | ValidationErrorResponse | list[RealizationInfo]
    """

    return sync_detailed(
        dref=dref,
        client=client,
    ).parsed


async def asyncio_detailed(
    dref: str,
    *,
    client: AuthenticatedClient,
) -> Response[ErrorResponse | ValidationErrorResponse | list[RealizationInfo]]:
    """List Realizations

     The caller's VO's realizations of a derivation, oldest first (empty if it never
    built it).

    Args:
        dref (str): the derivation's DRef (64 hex digits)

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | ValidationErrorResponse | list[RealizationInfo]]
    """

    kwargs = _get_kwargs(
        dref=dref,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    dref: str,
    *,
    client: AuthenticatedClient,
) -> ErrorResponse | ValidationErrorResponse | list[RealizationInfo] | None:
    """List Realizations

     The caller's VO's realizations of a derivation, oldest first (empty if it never
    built it).

    Args:
        dref (str): the derivation's DRef (64 hex digits)

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | ValidationErrorResponse | list[RealizationInfo]
    """

    return (
        await asyncio_detailed(
            dref=dref,
            client=client,
        )
    ).parsed
