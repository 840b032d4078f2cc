from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.body_revoke_token import BodyRevokeToken
from ...models.o_auth_error_response import OAuthErrorResponse
from ...models.validation_error_response import ValidationErrorResponse
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    body: BodyRevokeToken | Unset = UNSET,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/auth/revoke",
    }

    if not isinstance(body, Unset):
        _kwargs["data"] = body.to_dict()
    headers["Content-Type"] = "application/x-www-form-urlencoded"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Any | OAuthErrorResponse | ValidationErrorResponse | None:
    if response.status_code == 200:
        response_200 = response.json()
        return response_200

    if response.status_code == 400:
        response_400 = OAuthErrorResponse.from_dict(response.json())

        return response_400

    if response.status_code == 401:
        response_401 = OAuthErrorResponse.from_dict(response.json())

        return response_401

    if response.status_code == 422:
        response_422 = ValidationErrorResponse.from_dict(response.json())

        return response_422

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[Any | OAuthErrorResponse | ValidationErrorResponse]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient | Client,
    body: BodyRevokeToken | Unset = UNSET,
) -> Response[Any | OAuthErrorResponse | ValidationErrorResponse]:
    """Revoke Token

     RFC 7009: revoke the login (every refresh and access token) a token belongs to.

    Unknown or already revoked tokens are answered 200 as well.

    Args:
        body (BodyRevokeToken | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | OAuthErrorResponse | ValidationErrorResponse]
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
    body: BodyRevokeToken | Unset = UNSET,
) -> Any | OAuthErrorResponse | ValidationErrorResponse | None:
    """Revoke Token

     RFC 7009: revoke the login (every refresh and access token) a token belongs to.

    Unknown or already revoked tokens are answered 200 as well.

    Args:
        body (BodyRevokeToken | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | OAuthErrorResponse | ValidationErrorResponse
    """

    return sync_detailed(
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient | Client,
    body: BodyRevokeToken | Unset = UNSET,
) -> Response[Any | OAuthErrorResponse | ValidationErrorResponse]:
    """Revoke Token

     RFC 7009: revoke the login (every refresh and access token) a token belongs to.

    Unknown or already revoked tokens are answered 200 as well.

    Args:
        body (BodyRevokeToken | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | OAuthErrorResponse | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient | Client,
    body: BodyRevokeToken | Unset = UNSET,
) -> Any | OAuthErrorResponse | ValidationErrorResponse | None:
    """Revoke Token

     RFC 7009: revoke the login (every refresh and access token) a token belongs to.

    Unknown or already revoked tokens are answered 200 as well.

    Args:
        body (BodyRevokeToken | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | OAuthErrorResponse | ValidationErrorResponse
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
        )
    ).parsed
