from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.pipeline_submission import PipelineSubmission
from ...models.submit_response import SubmitResponse
from ...models.validation_error_response import ValidationErrorResponse
from ...types import Response


def _get_kwargs(
    *,
    body: PipelineSubmission,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/pipelines",
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorResponse | SubmitResponse | ValidationErrorResponse | None:
    if response.status_code == 201:
        response_201 = SubmitResponse.from_dict(response.json())

        return response_201

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
) -> Response[ErrorResponse | SubmitResponse | ValidationErrorResponse]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    body: PipelineSubmission,
) -> Response[ErrorResponse | SubmitResponse | ValidationErrorResponse]:
    """Submit Pipeline

     Submit a pipeline: the server re-derives and checks it, reuses what the caller's VO
    has realized and queues jobs for the rest, within the VO's quotas. A rejected
    pipeline leaves nothing behind. The secrets it carries are kept sealed until the jobs
    that need them end; they are never returned.

    Args:
        body (PipelineSubmission): A set of target derivations with their closure, keyed by the
            client's DRefs.

            ``secrets`` carries the values of the secrets its container steps name (never
            part of a derivation, a hash, a log or a response: see ``diracx.core.secrets``).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | SubmitResponse | ValidationErrorResponse]
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
    body: PipelineSubmission,
) -> ErrorResponse | SubmitResponse | ValidationErrorResponse | None:
    """Submit Pipeline

     Submit a pipeline: the server re-derives and checks it, reuses what the caller's VO
    has realized and queues jobs for the rest, within the VO's quotas. A rejected
    pipeline leaves nothing behind. The secrets it carries are kept sealed until the jobs
    that need them end; they are never returned.

    Args:
        body (PipelineSubmission): A set of target derivations with their closure, keyed by the
            client's DRefs.

            ``secrets`` carries the values of the secrets its container steps name (never
            part of a derivation, a hash, a log or a response: see ``diracx.core.secrets``).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | SubmitResponse | ValidationErrorResponse
    """

    return sync_detailed(
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    body: PipelineSubmission,
) -> Response[ErrorResponse | SubmitResponse | ValidationErrorResponse]:
    """Submit Pipeline

     Submit a pipeline: the server re-derives and checks it, reuses what the caller's VO
    has realized and queues jobs for the rest, within the VO's quotas. A rejected
    pipeline leaves nothing behind. The secrets it carries are kept sealed until the jobs
    that need them end; they are never returned.

    Args:
        body (PipelineSubmission): A set of target derivations with their closure, keyed by the
            client's DRefs.

            ``secrets`` carries the values of the secrets its container steps name (never
            part of a derivation, a hash, a log or a response: see ``diracx.core.secrets``).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | SubmitResponse | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    body: PipelineSubmission,
) -> ErrorResponse | SubmitResponse | ValidationErrorResponse | None:
    """Submit Pipeline

     Submit a pipeline: the server re-derives and checks it, reuses what the caller's VO
    has realized and queues jobs for the rest, within the VO's quotas. A rejected
    pipeline leaves nothing behind. The secrets it carries are kept sealed until the jobs
    that need them end; they are never returned.

    Args:
        body (PipelineSubmission): A set of target derivations with their closure, keyed by the
            client's DRefs.

            ``secrets`` carries the values of the secrets its container steps name (never
            part of a derivation, a hash, a log or a response: see ``diracx.core.secrets``).

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | SubmitResponse | ValidationErrorResponse
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
        )
    ).parsed
