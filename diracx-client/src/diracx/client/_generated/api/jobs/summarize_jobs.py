from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.job_summary_request import JobSummaryRequest
from ...models.summarize_jobs_response_200_item import SummarizeJobsResponse200Item
from ...models.validation_error_response import ValidationErrorResponse
from ...types import Response


def _get_kwargs(
    *,
    body: JobSummaryRequest,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/jobs/summary",
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> (
    ErrorResponse | ValidationErrorResponse | list[SummarizeJobsResponse200Item] | None
):
    if response.status_code == 200:
        response_200 = []
        _response_200 = response.json()
        for response_200_item_data in _response_200:
            response_200_item = SummarizeJobsResponse200Item.from_dict(
                response_200_item_data
            )

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
) -> Response[
    ErrorResponse | ValidationErrorResponse | list[SummarizeJobsResponse200Item]
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
    body: JobSummaryRequest,
) -> Response[
    ErrorResponse | ValidationErrorResponse | list[SummarizeJobsResponse200Item]
]:
    """Summarize Jobs

     The number of the caller's VO's matching jobs per distinct value of the grouping
    attributes (each item: those attributes, and ``count``).

    Args:
        body (JobSummaryRequest): ``POST /api/jobs/summary``: count the jobs matching *search*,
            grouped by attributes.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | ValidationErrorResponse | list[SummarizeJobsResponse200Item]]
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
    body: JobSummaryRequest,
) -> (
    ErrorResponse | ValidationErrorResponse | list[SummarizeJobsResponse200Item] | None
):
    """Summarize Jobs

     The number of the caller's VO's matching jobs per distinct value of the grouping
    attributes (each item: those attributes, and ``count``).

    Args:
        body (JobSummaryRequest): ``POST /api/jobs/summary``: count the jobs matching *search*,
            grouped by attributes.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | ValidationErrorResponse | list[SummarizeJobsResponse200Item]
    """

    return sync_detailed(
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    body: JobSummaryRequest,
) -> Response[
    ErrorResponse | ValidationErrorResponse | list[SummarizeJobsResponse200Item]
]:
    """Summarize Jobs

     The number of the caller's VO's matching jobs per distinct value of the grouping
    attributes (each item: those attributes, and ``count``).

    Args:
        body (JobSummaryRequest): ``POST /api/jobs/summary``: count the jobs matching *search*,
            grouped by attributes.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | ValidationErrorResponse | list[SummarizeJobsResponse200Item]]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    body: JobSummaryRequest,
) -> (
    ErrorResponse | ValidationErrorResponse | list[SummarizeJobsResponse200Item] | None
):
    """Summarize Jobs

     The number of the caller's VO's matching jobs per distinct value of the grouping
    attributes (each item: those attributes, and ``count``).

    Args:
        body (JobSummaryRequest): ``POST /api/jobs/summary``: count the jobs matching *search*,
            grouped by attributes.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | ValidationErrorResponse | list[SummarizeJobsResponse200Item]
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
        )
    ).parsed
