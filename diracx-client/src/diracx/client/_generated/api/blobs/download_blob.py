from http import HTTPStatus
from io import BytesIO
from typing import Any, cast
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.error_response import ErrorResponse
from ...models.validation_error_response import ValidationErrorResponse
from ...types import File, Response


def _get_kwargs(
    digest: str,
) -> dict[str, Any]:

    _kwargs: dict[str, Any] = {
        "method": "get",
        "url": "/api/blobs/{digest}".format(
            digest=quote(str(digest), safe=""),
        ),
    }

    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Any | ErrorResponse | File | ValidationErrorResponse | None:
    if response.status_code == 200:
        response_200 = File(payload=BytesIO(response.content))

        return response_200

    if response.status_code == 307:
        response_307 = cast(Any, None)
        return response_307

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

    if response.status_code == 422:
        response_422 = ValidationErrorResponse.from_dict(response.json())

        return response_422

    if client.raise_on_unexpected_status:
        raise errors.UnexpectedStatus(response.status_code, response.content)
    else:
        return None


def _build_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> Response[Any | ErrorResponse | File | ValidationErrorResponse]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    digest: str,
    *,
    client: AuthenticatedClient,
) -> Response[Any | ErrorResponse | File | ValidationErrorResponse]:
    """Download Blob

     A blob's bytes, verified against the digest as they are read; with an S3 store,
    a redirect to a presigned URL (follow it without the Authorization header). Only
    a blob the caller's VO has: another VO's is as absent as one nobody stored.

    Args:
        digest (str): SHA-256 of the blob (64 lowercase hex digits)

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorResponse | File | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        digest=digest,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    digest: str,
    *,
    client: AuthenticatedClient,
) -> Any | ErrorResponse | File | ValidationErrorResponse | None:
    """Download Blob

     A blob's bytes, verified against the digest as they are read; with an S3 store,
    a redirect to a presigned URL (follow it without the Authorization header). Only
    a blob the caller's VO has: another VO's is as absent as one nobody stored.

    Args:
        digest (str): SHA-256 of the blob (64 lowercase hex digits)

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ErrorResponse | File | ValidationErrorResponse
    """

    return sync_detailed(
        digest=digest,
        client=client,
    ).parsed


async def asyncio_detailed(
    digest: str,
    *,
    client: AuthenticatedClient,
) -> Response[Any | ErrorResponse | File | ValidationErrorResponse]:
    """Download Blob

     A blob's bytes, verified against the digest as they are read; with an S3 store,
    a redirect to a presigned URL (follow it without the Authorization header). Only
    a blob the caller's VO has: another VO's is as absent as one nobody stored.

    Args:
        digest (str): SHA-256 of the blob (64 lowercase hex digits)

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[Any | ErrorResponse | File | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        digest=digest,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    digest: str,
    *,
    client: AuthenticatedClient,
) -> Any | ErrorResponse | File | ValidationErrorResponse | None:
    """Download Blob

     A blob's bytes, verified against the digest as they are read; with an S3 store,
    a redirect to a presigned URL (follow it without the Authorization header). Only
    a blob the caller's VO has: another VO's is as absent as one nobody stored.

    Args:
        digest (str): SHA-256 of the blob (64 lowercase hex digits)

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Any | ErrorResponse | File | ValidationErrorResponse
    """

    return (
        await asyncio_detailed(
            digest=digest,
            client=client,
        )
    ).parsed
