from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.kill_response import KillResponse
from ...models.validation_error_response import ValidationErrorResponse
from ...types import Response


def _get_kwargs(
    pipeline_id: int,
) -> dict[str, Any]:

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/pipelines/{pipeline_id}/cancel".format(
            pipeline_id=quote(str(pipeline_id), safe=""),
        ),
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorResponse | KillResponse | ValidationErrorResponse | None:
    if response.status_code == 200:
        response_200 = KillResponse.from_dict(response.json())

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

    if response.status_code == 409:
        response_409 = ErrorResponse.from_dict(response.json())

        return response_409

    if response.status_code == 422:
        response_422 = ValidationErrorResponse.from_dict(response.json())

        return response_422

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[ErrorResponse | KillResponse | ValidationErrorResponse]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    pipeline_id: int,
    *,
    client: AuthenticatedClient,
) -> Response[ErrorResponse | KillResponse | ValidationErrorResponse]:
    """Cancel Pipeline

     Cancel a pipeline: kill every live job of it (Killed; their builds stop within
    about a second). A job it shares with another pipeline is killed too (that one
    fails), if the caller may kill it: their own, or any with the VOAdmin property.

    Args:
        pipeline_id (int): the pipeline's id

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | KillResponse | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        pipeline_id=pipeline_id,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    pipeline_id: int,
    *,
    client: AuthenticatedClient,
) -> ErrorResponse | KillResponse | ValidationErrorResponse | None:
    """Cancel Pipeline

     Cancel a pipeline: kill every live job of it (Killed; their builds stop within
    about a second). A job it shares with another pipeline is killed too (that one
    fails), if the caller may kill it: their own, or any with the VOAdmin property.

    Args:
        pipeline_id (int): the pipeline's id

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | KillResponse | ValidationErrorResponse
    """

    return sync_detailed(
        pipeline_id=pipeline_id,
        client=client,
    ).parsed


async def asyncio_detailed(
    pipeline_id: int,
    *,
    client: AuthenticatedClient,
) -> Response[ErrorResponse | KillResponse | ValidationErrorResponse]:
    """Cancel Pipeline

     Cancel a pipeline: kill every live job of it (Killed; their builds stop within
    about a second). A job it shares with another pipeline is killed too (that one
    fails), if the caller may kill it: their own, or any with the VOAdmin property.

    Args:
        pipeline_id (int): the pipeline's id

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | KillResponse | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        pipeline_id=pipeline_id,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    pipeline_id: int,
    *,
    client: AuthenticatedClient,
) -> ErrorResponse | KillResponse | ValidationErrorResponse | None:
    """Cancel Pipeline

     Cancel a pipeline: kill every live job of it (Killed; their builds stop within
    about a second). A job it shares with another pipeline is killed too (that one
    fails), if the caller may kill it: their own, or any with the VOAdmin property.

    Args:
        pipeline_id (int): the pipeline's id

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | KillResponse | ValidationErrorResponse
    """

    return (
        await asyncio_detailed(
            pipeline_id=pipeline_id,
            client=client,
        )
    ).parsed
