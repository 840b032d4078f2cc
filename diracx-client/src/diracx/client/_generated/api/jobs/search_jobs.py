from http import HTTPStatus
from typing import Any, cast

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.job_search_request import JobSearchRequest
from ...models.search_jobs_response_200_item import SearchJobsResponse200Item
from ...models.validation_error_response import ValidationErrorResponse
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    body: JobSearchRequest,
    page: int | Unset = 1,
    per_page: int | Unset = 100,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    params: dict[str, Any] = {}

    params["page"] = page

    params["per_page"] = per_page

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/jobs/search",
        "params": params,
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> (
    Any
    | ErrorResponse
    | ValidationErrorResponse
    | list[SearchJobsResponse200Item]
    | None
):
    if response.status_code == 200:
        response_200 = []
        _response_200 = response.json()
        for response_200_item_data in _response_200:
            response_200_item = SearchJobsResponse200Item.from_dict(
                response_200_item_data
            )

            response_200.append(response_200_item)

        return response_200

    if response.status_code == 206:
        response_206 = cast(Any, None)
        return response_206

    if response.status_code == 400:
        response_400 = ErrorResponse.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = ErrorResponse.from_dict(response.json())

        return response_401

    if response.status_code == 403:
        response_403 = ErrorResponse.from_dict(response.json())

        return response_403

    if response.status_code == 416:
        response_416 = ErrorResponse.from_dict(response.json())

        return response_416

    if response.status_code == 422:
        response_422 = ValidationErrorResponse.from_dict(response.json())

        return response_422

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[
    Any | ErrorResponse | ValidationErrorResponse | list[SearchJobsResponse200Item]
]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    body: JobSearchRequest,
    page: int | Unset = 1,
    per_page: int | Unset = 100,
) -> Response[
    Any | ErrorResponse | ValidationErrorResponse | list[SearchJobsResponse200Item]
]:
    """Search Jobs

     Jobs of the caller's VO matching every filter, with the chosen attributes, in the
    chosen order.

    200 with every match, 206 with a part of them; Content-Range says which
    (``jobs 0-99/1234``: the 0-based first and last, and the number of matches).

    Args:
        page (int | Unset): the page, from 1 Default: 1.
        per_page (int | Unset): jobs per page Default: 100.
        body (JobSearchRequest): ``POST /api/jobs/search``: the attributes to return (all if
            none), filters, order.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorResponse | ValidationErrorResponse | list[SearchJobsResponse200Item]]
    """

    kwargs = _get_kwargs(
        body=body,
        page=page,
        per_page=per_page,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    body: JobSearchRequest,
    page: int | Unset = 1,
    per_page: int | Unset = 100,
) -> (
    Any
    | ErrorResponse
    | ValidationErrorResponse
    | list[SearchJobsResponse200Item]
    | None
):
    """Search Jobs

     Jobs of the caller's VO matching every filter, with the chosen attributes, in the
    chosen order.

    200 with every match, 206 with a part of them; Content-Range says which
    (``jobs 0-99/1234``: the 0-based first and last, and the number of matches).

    Args:
        page (int | Unset): the page, from 1 Default: 1.
        per_page (int | Unset): jobs per page Default: 100.
        body (JobSearchRequest): ``POST /api/jobs/search``: the attributes to return (all if
            none), filters, order.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ErrorResponse | ValidationErrorResponse | list[SearchJobsResponse200Item]
    """

    return sync_detailed(
        client=client,
        body=body,
        page=page,
        per_page=per_page,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    body: JobSearchRequest,
    page: int | Unset = 1,
    per_page: int | Unset = 100,
) -> Response[
    Any | ErrorResponse | ValidationErrorResponse | list[SearchJobsResponse200Item]
]:
    """Search Jobs

     Jobs of the caller's VO matching every filter, with the chosen attributes, in the
    chosen order.

    200 with every match, 206 with a part of them; Content-Range says which
    (``jobs 0-99/1234``: the 0-based first and last, and the number of matches).

    Args:
        page (int | Unset): the page, from 1 Default: 1.
        per_page (int | Unset): jobs per page Default: 100.
        body (JobSearchRequest): ``POST /api/jobs/search``: the attributes to return (all if
            none), filters, order.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorResponse | ValidationErrorResponse | list[SearchJobsResponse200Item]]
    """

    kwargs = _get_kwargs(
        body=body,
        page=page,
        per_page=per_page,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    body: JobSearchRequest,
    page: int | Unset = 1,
    per_page: int | Unset = 100,
) -> (
    Any
    | ErrorResponse
    | ValidationErrorResponse
    | list[SearchJobsResponse200Item]
    | None
):
    """Search Jobs

     Jobs of the caller's VO matching every filter, with the chosen attributes, in the
    chosen order.

    200 with every match, 206 with a part of them; Content-Range says which
    (``jobs 0-99/1234``: the 0-based first and last, and the number of matches).

    Args:
        page (int | Unset): the page, from 1 Default: 1.
        per_page (int | Unset): jobs per page Default: 100.
        body (JobSearchRequest): ``POST /api/jobs/search``: the attributes to return (all if
            none), filters, order.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ErrorResponse | ValidationErrorResponse | list[SearchJobsResponse200Item]
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
            page=page,
            per_page=per_page,
        )
    ).parsed
