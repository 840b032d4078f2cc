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
    rref: str,
) -> dict[str, Any]:

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/realizations/{rref}".format(
            rref=quote(str(rref), safe=""),
        ),
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorResponse | RealizationInfo | ValidationErrorResponse | None:
    if response.status_code == 200:
        response_200 = RealizationInfo.from_dict(response.json())

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
) -> Response[ErrorResponse | RealizationInfo | ValidationErrorResponse]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    rref: str,
    *,
    client: AuthenticatedClient,
) -> Response[ErrorResponse | RealizationInfo | ValidationErrorResponse]:
    """Get Realization

     One realization (of the caller's VO: another VO's does not exist for it).

    Args:
        rref (str): the realization's RRef (64 hex digits)

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | RealizationInfo | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        rref=rref,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    rref: str,
    *,
    client: AuthenticatedClient,
) -> ErrorResponse | RealizationInfo | ValidationErrorResponse | None:
    """Get Realization

     One realization (of the caller's VO: another VO's does not exist for it).

    Args:
        rref (str): the realization's RRef (64 hex digits)

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | RealizationInfo | ValidationErrorResponse
    """

    return sync_detailed(
        rref=rref,
        client=client,
    ).parsed


async def asyncio_detailed(
    rref: str,
    *,
    client: AuthenticatedClient,
) -> Response[ErrorResponse | RealizationInfo | ValidationErrorResponse]:
    """Get Realization

     One realization (of the caller's VO: another VO's does not exist for it).

    Args:
        rref (str): the realization's RRef (64 hex digits)

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | RealizationInfo | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        rref=rref,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    rref: str,
    *,
    client: AuthenticatedClient,
) -> ErrorResponse | RealizationInfo | ValidationErrorResponse | None:
    """Get Realization

     One realization (of the caller's VO: another VO's does not exist for it).

    Args:
        rref (str): the realization's RRef (64 hex digits)

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | RealizationInfo | ValidationErrorResponse
    """

    return (
        await asyncio_detailed(
            rref=rref,
            client=client,
        )
    ).parsed
