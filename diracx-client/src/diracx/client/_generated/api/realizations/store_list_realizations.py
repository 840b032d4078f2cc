from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.realization_info import RealizationInfo
from ...models.validation_error_response import ValidationErrorResponse
from ...types import UNSET, Response, Unset


def _get_kwargs(
    *,
    name: None | str | Unset = UNSET,
    dref: None | str | Unset = UNSET,
    prefix: None | str | Unset = UNSET,
    limit: int | Unset = 100,
) -> dict[str, Any]:

    params: dict[str, Any] = {}

    json_name: None | str | Unset
    if isinstance(name, Unset):
        json_name = UNSET
    else:
        json_name = name
    params["name"] = json_name

    json_dref: None | str | Unset
    if isinstance(dref, Unset):
        json_dref = UNSET
    else:
        json_dref = dref
    params["dref"] = json_dref

    json_prefix: None | str | Unset
    if isinstance(prefix, Unset):
        json_prefix = UNSET
    else:
        json_prefix = prefix
    params["prefix"] = json_prefix

    params["limit"] = limit

    params = {k: v for k, v in params.items() if v is not UNSET and v is not None}

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/store/realizations",
        "params": params,
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorResponse | ValidationErrorResponse | list[RealizationInfo] | None:
    if response.status_code == 200:
        response_200 = []
        _response_200 = response.json()
        for response_200_item_data in _response_200:
            response_200_item = RealizationInfo.from_dict(response_200_item_data)

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
) -> Response[ErrorResponse | ValidationErrorResponse | list[RealizationInfo]]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    name: None | str | Unset = UNSET,
    dref: None | str | Unset = UNSET,
    prefix: None | str | Unset = UNSET,
    limit: int | Unset = 100,
) -> Response[ErrorResponse | ValidationErrorResponse | list[RealizationInfo]]:
    """Store List Realizations

     The VO's realizations, newest first; of the stages called *name*, of one
    derivation, or whose RRef starts with *prefix*.

    Args:
        name (None | str | Unset): stage name
        dref (None | str | Unset): a DRef
        prefix (None | str | Unset): the RRef starts with this
        limit (int | Unset):  Default: 100.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | ValidationErrorResponse | list[RealizationInfo]]
    """

    kwargs = _get_kwargs(
        name=name,
        dref=dref,
        prefix=prefix,
        limit=limit,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    *,
    client: AuthenticatedClient,
    name: None | str | Unset = UNSET,
    dref: None | str | Unset = UNSET,
    prefix: None | str | Unset = UNSET,
    limit: int | Unset = 100,
) -> ErrorResponse | ValidationErrorResponse | list[RealizationInfo] | None:
    """Store List Realizations

     The VO's realizations, newest first; of the stages called *name*, of one
    derivation, or whose RRef starts with *prefix*.

    Args:
        name (None | str | Unset): stage name
        dref (None | str | Unset): a DRef
        prefix (None | str | Unset): the RRef starts with this
        limit (int | Unset):  Default: 100.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | ValidationErrorResponse | list[RealizationInfo]
    """

    return sync_detailed(
        client=client,
        name=name,
        dref=dref,
        prefix=prefix,
        limit=limit,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    name: None | str | Unset = UNSET,
    dref: None | str | Unset = UNSET,
    prefix: None | str | Unset = UNSET,
    limit: int | Unset = 100,
) -> Response[ErrorResponse | ValidationErrorResponse | list[RealizationInfo]]:
    """Store List Realizations

     The VO's realizations, newest first; of the stages called *name*, of one
    derivation, or whose RRef starts with *prefix*.

    Args:
        name (None | str | Unset): stage name
        dref (None | str | Unset): a DRef
        prefix (None | str | Unset): the RRef starts with this
        limit (int | Unset):  Default: 100.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | ValidationErrorResponse | list[RealizationInfo]]
    """

    kwargs = _get_kwargs(
        name=name,
        dref=dref,
        prefix=prefix,
        limit=limit,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    name: None | str | Unset = UNSET,
    dref: None | str | Unset = UNSET,
    prefix: None | str | Unset = UNSET,
    limit: int | Unset = 100,
) -> ErrorResponse | ValidationErrorResponse | list[RealizationInfo] | None:
    """Store List Realizations

     The VO's realizations, newest first; of the stages called *name*, of one
    derivation, or whose RRef starts with *prefix*.

    Args:
        name (None | str | Unset): stage name
        dref (None | str | Unset): a DRef
        prefix (None | str | Unset): the RRef starts with this
        limit (int | Unset):  Default: 100.

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | ValidationErrorResponse | list[RealizationInfo]
    """

    return (
        await asyncio_detailed(
            client=client,
            name=name,
            dref=dref,
            prefix=prefix,
            limit=limit,
        )
    ).parsed
