from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.pipeline_events import PipelineEvents
from ...models.validation_error_response import ValidationErrorResponse
from ...types import UNSET, Response, Unset


def _get_kwargs(
    pipeline_id: int,
    *,
    after: int | Unset = 0,
    wait: float | Unset = 0.0,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    params["after"] = after

    params["wait"] = wait

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/pipelines/{pipeline_id}/events".format(
            pipeline_id=quote(str(pipeline_id), safe=""),
        ),
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorResponse | PipelineEvents | ValidationErrorResponse | None:
    if response.status_code == 200:
        response_200 = PipelineEvents.from_dict(response.json())

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
) -> Response[ErrorResponse | PipelineEvents | ValidationErrorResponse]:
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
    after: int | Unset = 0,
    wait: float | Unset = 0.0,
) -> Response[ErrorResponse | PipelineEvents | ValidationErrorResponse]:
    """Pipeline Events

     Status changes of the pipeline's jobs since *after*; with *wait*, a long poll that
    returns as soon as something happens or the pipeline is finished.

    Args:
        pipeline_id (int): the pipeline's id
        after (int | Unset): return events after this event id Default: 0.
        wait (float | Unset): seconds to wait for a new event (long poll); 0 answers at once
            Default: 0.0.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | PipelineEvents | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        pipeline_id=pipeline_id,
        after=after,
        wait=wait,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    pipeline_id: int,
    *,
    client: AuthenticatedClient,
    after: int | Unset = 0,
    wait: float | Unset = 0.0,
) -> ErrorResponse | PipelineEvents | ValidationErrorResponse | None:
    """Pipeline Events

     Status changes of the pipeline's jobs since *after*; with *wait*, a long poll that
    returns as soon as something happens or the pipeline is finished.

    Args:
        pipeline_id (int): the pipeline's id
        after (int | Unset): return events after this event id Default: 0.
        wait (float | Unset): seconds to wait for a new event (long poll); 0 answers at once
            Default: 0.0.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | PipelineEvents | ValidationErrorResponse
    """

    return sync_detailed(
        pipeline_id=pipeline_id,
        client=client,
        after=after,
        wait=wait,
    ).parsed


async def asyncio_detailed(
    pipeline_id: int,
    *,
    client: AuthenticatedClient,
    after: int | Unset = 0,
    wait: float | Unset = 0.0,
) -> Response[ErrorResponse | PipelineEvents | ValidationErrorResponse]:
    """Pipeline Events

     Status changes of the pipeline's jobs since *after*; with *wait*, a long poll that
    returns as soon as something happens or the pipeline is finished.

    Args:
        pipeline_id (int): the pipeline's id
        after (int | Unset): return events after this event id Default: 0.
        wait (float | Unset): seconds to wait for a new event (long poll); 0 answers at once
            Default: 0.0.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | PipelineEvents | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        pipeline_id=pipeline_id,
        after=after,
        wait=wait,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    pipeline_id: int,
    *,
    client: AuthenticatedClient,
    after: int | Unset = 0,
    wait: float | Unset = 0.0,
) -> ErrorResponse | PipelineEvents | ValidationErrorResponse | None:
    """Pipeline Events

     Status changes of the pipeline's jobs since *after*; with *wait*, a long poll that
    returns as soon as something happens or the pipeline is finished.

    Args:
        pipeline_id (int): the pipeline's id
        after (int | Unset): return events after this event id Default: 0.
        wait (float | Unset): seconds to wait for a new event (long poll); 0 answers at once
            Default: 0.0.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | PipelineEvents | ValidationErrorResponse
    """

    return (
        await asyncio_detailed(
            pipeline_id=pipeline_id,
            client=client,
            after=after,
            wait=wait,
        )
    ).parsed
