from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.add_heartbeat_body_type_0 import AddHeartbeatBodyType0
from ...models.error_response import ErrorResponse
from ...models.job_heartbeat_response import JobHeartbeatResponse
from ...models.validation_error_response import ValidationErrorResponse
from ...types import Response


def _get_kwargs(
    *,
    body: AddHeartbeatBodyType0 | list[int],
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "patch",
        "url": "/api/jobs/heartbeat",
    }

    if isinstance(body, AddHeartbeatBodyType0):
        _kwargs["json"] = body.to_dict()
    else:
        _kwargs["json"] = body

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorResponse | JobHeartbeatResponse | ValidationErrorResponse | None:
    if response.status_code == 200:
        response_200 = JobHeartbeatResponse.from_dict(response.json())

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
) -> Response[ErrorResponse | JobHeartbeatResponse | ValidationErrorResponse]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    body: AddHeartbeatBodyType0 | list[int],
) -> Response[ErrorResponse | JobHeartbeatResponse | ValidationErrorResponse]:
    """Add Heartbeat

     A pilot reports that jobs are still being worked on (DIRAC's JobMonitoring
    heartbeat): their heartbeat time is set, as a worker's heartbeat sets it, and the
    data that comes with it is accepted but not kept. Only Running or Completing jobs,
    the caller's own (any of the VO's with the VOAdmin property); each other job is
    listed in ``failed`` with the reason (a job of another VO "does not exist").

    Args:
        body (AddHeartbeatBodyType0 | list[int]): job ids, or DIRAC's {job id: heartbeat data
            (LoadAverage, MemoryUsed...)}

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | JobHeartbeatResponse | ValidationErrorResponse]
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
    body: AddHeartbeatBodyType0 | list[int],
) -> ErrorResponse | JobHeartbeatResponse | ValidationErrorResponse | None:
    """Add Heartbeat

     A pilot reports that jobs are still being worked on (DIRAC's JobMonitoring
    heartbeat): their heartbeat time is set, as a worker's heartbeat sets it, and the
    data that comes with it is accepted but not kept. Only Running or Completing jobs,
    the caller's own (any of the VO's with the VOAdmin property); each other job is
    listed in ``failed`` with the reason (a job of another VO "does not exist").

    Args:
        body (AddHeartbeatBodyType0 | list[int]): job ids, or DIRAC's {job id: heartbeat data
            (LoadAverage, MemoryUsed...)}

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | JobHeartbeatResponse | ValidationErrorResponse
    """

    return sync_detailed(
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    body: AddHeartbeatBodyType0 | list[int],
) -> Response[ErrorResponse | JobHeartbeatResponse | ValidationErrorResponse]:
    """Add Heartbeat

     A pilot reports that jobs are still being worked on (DIRAC's JobMonitoring
    heartbeat): their heartbeat time is set, as a worker's heartbeat sets it, and the
    data that comes with it is accepted but not kept. Only Running or Completing jobs,
    the caller's own (any of the VO's with the VOAdmin property); each other job is
    listed in ``failed`` with the reason (a job of another VO "does not exist").

    Args:
        body (AddHeartbeatBodyType0 | list[int]): job ids, or DIRAC's {job id: heartbeat data
            (LoadAverage, MemoryUsed...)}

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | JobHeartbeatResponse | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    body: AddHeartbeatBodyType0 | list[int],
) -> ErrorResponse | JobHeartbeatResponse | ValidationErrorResponse | None:
    """Add Heartbeat

     A pilot reports that jobs are still being worked on (DIRAC's JobMonitoring
    heartbeat): their heartbeat time is set, as a worker's heartbeat sets it, and the
    data that comes with it is accepted but not kept. Only Running or Completing jobs,
    the caller's own (any of the VO's with the VOAdmin property); each other job is
    listed in ``failed`` with the reason (a job of another VO "does not exist").

    Args:
        body (AddHeartbeatBodyType0 | list[int]): job ids, or DIRAC's {job id: heartbeat data
            (LoadAverage, MemoryUsed...)}

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | JobHeartbeatResponse | ValidationErrorResponse
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
        )
    ).parsed
