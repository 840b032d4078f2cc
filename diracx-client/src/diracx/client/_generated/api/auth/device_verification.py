from http import HTTPStatus
from typing import Any, cast

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.validation_error_response import ValidationErrorResponse
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    user_code: None | str | Unset = UNSET,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    json_user_code: None | str | Unset
    if isinstance(user_code, Unset):
        json_user_code = UNSET
    else:
        json_user_code = user_code
    params["user_code"] = json_user_code

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/auth/device",
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Any | ValidationErrorResponse | str | None:
    if response.status_code == 200:
        response_200 = response.text
        return response_200

    if response.status_code == 302:
        response_302 = cast(Any, None)
        return response_302

    if response.status_code == 400:
        response_400 = response.text
        return response_400

    if response.status_code == 422:
        response_422 = ValidationErrorResponse.from_dict(response.json())

        return response_422

    if response.status_code == 502:
        response_502 = response.text
        return response_502

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[Any | ValidationErrorResponse | str]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient | Client,
    user_code: None | str | Unset = UNSET,
) -> Response[Any | ValidationErrorResponse | str]:
    """Device Verification

     The page ``dirac login`` sends the user to: a form for the code, then the VO's
    identity provider or the built-in accounts' login form.

    Args:
        user_code (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ValidationErrorResponse | str]
    """

    kwargs = _get_kwargs(
        user_code=user_code,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient | Client,
    user_code: None | str | Unset = UNSET,
) -> Any | ValidationErrorResponse | str | None:
    """Device Verification

     The page ``dirac login`` sends the user to: a form for the code, then the VO's
    identity provider or the built-in accounts' login form.

    Args:
        user_code (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ValidationErrorResponse | str
    """

    return sync_detailed(
        client=client,
        user_code=user_code,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient | Client,
    user_code: None | str | Unset = UNSET,
) -> Response[Any | ValidationErrorResponse | str]:
    """Device Verification

     The page ``dirac login`` sends the user to: a form for the code, then the VO's
    identity provider or the built-in accounts' login form.

    Args:
        user_code (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ValidationErrorResponse | str]
    """

    kwargs = _get_kwargs(
        user_code=user_code,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient | Client,
    user_code: None | str | Unset = UNSET,
) -> Any | ValidationErrorResponse | str | None:
    """Device Verification

     The page ``dirac login`` sends the user to: a form for the code, then the VO's
    identity provider or the built-in accounts' login form.

    Args:
        user_code (None | str | Unset):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ValidationErrorResponse | str
    """

    return (
        await asyncio_detailed(
            client=client,
            user_code=user_code,
        )
    ).parsed
