from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.list_pipelines_status_type_0 import ListPipelinesStatusType0
from ...models.pipeline_page import PipelinePage
from ...models.validation_error_response import ValidationErrorResponse
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    limit: int | Unset = 50,
    cursor: int | None | Unset = UNSET,
    owner: None | str | Unset = UNSET,
    status: ListPipelinesStatusType0 | None | Unset = UNSET,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    params["limit"] = limit

    json_cursor: int | None | Unset
    if isinstance(cursor, Unset):
        json_cursor = UNSET
    else:
        json_cursor = cursor
    params["cursor"] = json_cursor

    json_owner: None | str | Unset
    if isinstance(owner, Unset):
        json_owner = UNSET
    else:
        json_owner = owner
    params["owner"] = json_owner

    json_status: None | str | Unset
    if isinstance(status, Unset):
        json_status = UNSET
    elif isinstance(status, ListPipelinesStatusType0):
        json_status = status.value
    else:
        json_status = status
    params["status"] = json_status

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/pipelines",
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorResponse | PipelinePage | ValidationErrorResponse | None:
    if response.status_code == 200:
        response_200 = PipelinePage.from_dict(response.json())

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
) -> Response[ErrorResponse | PipelinePage | ValidationErrorResponse]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = 50,
    cursor: int | None | Unset = UNSET,
    owner: None | str | Unset = UNSET,
    status: ListPipelinesStatusType0 | None | Unset = UNSET,
) -> Response[ErrorResponse | PipelinePage | ValidationErrorResponse]:
    """List Pipelines

     The caller's VO's pipelines, newest first, each with its owner, its targets and how
    many of its stages are in each state (cached, or a job status). Cursor pagination:
    the answer's ``next_cursor`` fetches the next (older) page, and pipelines submitted
    meanwhile never shift the pages.

    Args:
        limit (int | Unset): pipelines per page Default: 50.
        cursor (int | None | Unset): the previous page's next_cursor: the pipelines older than it
        owner (None | str | Unset): only this user's
        status (ListPipelinesStatusType0 | None | Unset): only those in this state

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | PipelinePage | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        limit=limit,
        cursor=cursor,
        owner=owner,
        status=status,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = 50,
    cursor: int | None | Unset = UNSET,
    owner: None | str | Unset = UNSET,
    status: ListPipelinesStatusType0 | None | Unset = UNSET,
) -> ErrorResponse | PipelinePage | ValidationErrorResponse | None:
    """List Pipelines

     The caller's VO's pipelines, newest first, each with its owner, its targets and how
    many of its stages are in each state (cached, or a job status). Cursor pagination:
    the answer's ``next_cursor`` fetches the next (older) page, and pipelines submitted
    meanwhile never shift the pages.

    Args:
        limit (int | Unset): pipelines per page Default: 50.
        cursor (int | None | Unset): the previous page's next_cursor: the pipelines older than it
        owner (None | str | Unset): only this user's
        status (ListPipelinesStatusType0 | None | Unset): only those in this state

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | PipelinePage | ValidationErrorResponse
    """

    return sync_detailed(
        client=client,
        limit=limit,
        cursor=cursor,
        owner=owner,
        status=status,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = 50,
    cursor: int | None | Unset = UNSET,
    owner: None | str | Unset = UNSET,
    status: ListPipelinesStatusType0 | None | Unset = UNSET,
) -> Response[ErrorResponse | PipelinePage | ValidationErrorResponse]:
    """List Pipelines

     The caller's VO's pipelines, newest first, each with its owner, its targets and how
    many of its stages are in each state (cached, or a job status). Cursor pagination:
    the answer's ``next_cursor`` fetches the next (older) page, and pipelines submitted
    meanwhile never shift the pages.

    Args:
        limit (int | Unset): pipelines per page Default: 50.
        cursor (int | None | Unset): the previous page's next_cursor: the pipelines older than it
        owner (None | str | Unset): only this user's
        status (ListPipelinesStatusType0 | None | Unset): only those in this state

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | PipelinePage | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        limit=limit,
        cursor=cursor,
        owner=owner,
        status=status,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    limit: int | Unset = 50,
    cursor: int | None | Unset = UNSET,
    owner: None | str | Unset = UNSET,
    status: ListPipelinesStatusType0 | None | Unset = UNSET,
) -> ErrorResponse | PipelinePage | ValidationErrorResponse | None:
    """List Pipelines

     The caller's VO's pipelines, newest first, each with its owner, its targets and how
    many of its stages are in each state (cached, or a job status). Cursor pagination:
    the answer's ``next_cursor`` fetches the next (older) page, and pipelines submitted
    meanwhile never shift the pages.

    Args:
        limit (int | Unset): pipelines per page Default: 50.
        cursor (int | None | Unset): the previous page's next_cursor: the pipelines older than it
        owner (None | str | Unset): only this user's
        status (ListPipelinesStatusType0 | None | Unset): only those in this state

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | PipelinePage | ValidationErrorResponse
    """

    return (
        await asyncio_detailed(
            client=client,
            limit=limit,
            cursor=cursor,
            owner=owner,
            status=status,
        )
    ).parsed
