from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.retry_response import RetryResponse
from ...models.validation_error_response import ValidationErrorResponse
from ...types import Response


def _get_kwargs(
    pipeline_id: int,
) -> dict[str, Any]:

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/pipelines/{pipeline_id}/retry".format(
            pipeline_id=quote(str(pipeline_id), safe=""),
        ),
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorResponse | RetryResponse | ValidationErrorResponse | None:
    if response.status_code == 200:
        response_200 = RetryResponse.from_dict(response.json())

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
) -> Response[ErrorResponse | RetryResponse | ValidationErrorResponse]:
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
) -> Response[ErrorResponse | RetryResponse | ValidationErrorResponse]:
    """Retry Pipeline

     Build a pipeline's Failed and Killed jobs again, and so the stages that failed
    because of them, within the VO's quotas (as ``POST /api/jobs/{id}/reschedule`` does
    each one): Waiting, or Checking until their inputs are built. The answer lists the
    jobs retried, and the failed ones left as they are with the reason (another user's
    job it shares, without VOAdmin; secrets dropped when it ended; an input that stays
    failed).

    Args:
        pipeline_id (int): the pipeline's id

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | RetryResponse | ValidationErrorResponse]
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
) -> ErrorResponse | RetryResponse | ValidationErrorResponse | None:
    """Retry Pipeline

     Build a pipeline's Failed and Killed jobs again, and so the stages that failed
    because of them, within the VO's quotas (as ``POST /api/jobs/{id}/reschedule`` does
    each one): Waiting, or Checking until their inputs are built. The answer lists the
    jobs retried, and the failed ones left as they are with the reason (another user's
    job it shares, without VOAdmin; secrets dropped when it ended; an input that stays
    failed).

    Args:
        pipeline_id (int): the pipeline's id

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | RetryResponse | ValidationErrorResponse
    """

    return sync_detailed(
        pipeline_id=pipeline_id,
        client=client,
    ).parsed


async def asyncio_detailed(
    pipeline_id: int,
    *,
    client: AuthenticatedClient,
) -> Response[ErrorResponse | RetryResponse | ValidationErrorResponse]:
    """Retry Pipeline

     Build a pipeline's Failed and Killed jobs again, and so the stages that failed
    because of them, within the VO's quotas (as ``POST /api/jobs/{id}/reschedule`` does
    each one): Waiting, or Checking until their inputs are built. The answer lists the
    jobs retried, and the failed ones left as they are with the reason (another user's
    job it shares, without VOAdmin; secrets dropped when it ended; an input that stays
    failed).

    Args:
        pipeline_id (int): the pipeline's id

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | RetryResponse | ValidationErrorResponse]
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
) -> ErrorResponse | RetryResponse | ValidationErrorResponse | None:
    """Retry Pipeline

     Build a pipeline's Failed and Killed jobs again, and so the stages that failed
    because of them, within the VO's quotas (as ``POST /api/jobs/{id}/reschedule`` does
    each one): Waiting, or Checking until their inputs are built. The answer lists the
    jobs retried, and the failed ones left as they are with the reason (another user's
    job it shares, without VOAdmin; secrets dropped when it ended; an input that stays
    failed).

    Args:
        pipeline_id (int): the pipeline's id

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | RetryResponse | ValidationErrorResponse
    """

    return (
        await asyncio_detailed(
            pipeline_id=pipeline_id,
            client=client,
        )
    ).parsed
