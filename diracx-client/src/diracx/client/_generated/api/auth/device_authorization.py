from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.body_device_authorization import BodyDeviceAuthorization
from ...models.device_authorization_response import DeviceAuthorizationResponse
from ...models.o_auth_error_response import OAuthErrorResponse
from ...models.validation_error_response import ValidationErrorResponse
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    body: BodyDeviceAuthorization | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/auth/device",
    }

    if not isinstance(body, Unset):
        _kwargs["data"] = body.to_dict()
    headers["Content-Type"] = "application/x-www-form-urlencoded"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> DeviceAuthorizationResponse | OAuthErrorResponse | ValidationErrorResponse | None:
    if response.status_code == 200:
        response_200 = DeviceAuthorizationResponse.from_dict(response.json())

        return response_200

    if response.status_code == 400:
        response_400 = OAuthErrorResponse.from_dict(response.json())

        return response_400

    if response.status_code == 422:
        response_422 = ValidationErrorResponse.from_dict(response.json())

        return response_422

    if response.status_code == 503:
        response_503 = OAuthErrorResponse.from_dict(response.json())

        return response_503

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[
    DeviceAuthorizationResponse | OAuthErrorResponse | ValidationErrorResponse
]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient | Client,
    body: BodyDeviceAuthorization | Unset = UNSET,
) -> Response[
    DeviceAuthorizationResponse | OAuthErrorResponse | ValidationErrorResponse
]:
    """Device Authorization

     Start ``dirac login``: a device code for the client, a user code for the browser
    (RFC 8628 device authorization request). ``scope``: ``vo:<vo> [group:<group>]``.

    Args:
        body (BodyDeviceAuthorization | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[DeviceAuthorizationResponse | OAuthErrorResponse | ValidationErrorResponse]
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
    client: AuthenticatedClient | Client,
    body: BodyDeviceAuthorization | Unset = UNSET,
) -> DeviceAuthorizationResponse | OAuthErrorResponse | ValidationErrorResponse | None:
    """Device Authorization

     Start ``dirac login``: a device code for the client, a user code for the browser
    (RFC 8628 device authorization request). ``scope``: ``vo:<vo> [group:<group>]``.

    Args:
        body (BodyDeviceAuthorization | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        DeviceAuthorizationResponse | OAuthErrorResponse | ValidationErrorResponse
    """

    return sync_detailed(
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient | Client,
    body: BodyDeviceAuthorization | Unset = UNSET,
) -> Response[
    DeviceAuthorizationResponse | OAuthErrorResponse | ValidationErrorResponse
]:
    """Device Authorization

     Start ``dirac login``: a device code for the client, a user code for the browser
    (RFC 8628 device authorization request). ``scope``: ``vo:<vo> [group:<group>]``.

    Args:
        body (BodyDeviceAuthorization | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[DeviceAuthorizationResponse | OAuthErrorResponse | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient | Client,
    body: BodyDeviceAuthorization | Unset = UNSET,
) -> DeviceAuthorizationResponse | OAuthErrorResponse | ValidationErrorResponse | None:
    """Device Authorization

     Start ``dirac login``: a device code for the client, a user code for the browser
    (RFC 8628 device authorization request). ``scope``: ``vo:<vo> [group:<group>]``.

    Args:
        body (BodyDeviceAuthorization | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        DeviceAuthorizationResponse | OAuthErrorResponse | ValidationErrorResponse
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
        )
    ).parsed
