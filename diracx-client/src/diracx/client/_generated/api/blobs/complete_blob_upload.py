from http import HTTPStatus
from typing import Any
from urllib.parse import quote

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.blob_info import BlobInfo
from ...models.complete_upload import CompleteUpload
from ...models.error_response import ErrorResponse
from ...models.validation_error_response import ValidationErrorResponse
from ...types import Response


def _get_kwargs(
    digest: str,
    *,
    body: CompleteUpload,
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/blobs/uploads/{digest}/complete".format(
            digest=quote(str(digest), safe=""),
        ),
    }

    _kwargs["json"] = body.to_dict()

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> BlobInfo | ErrorResponse | ValidationErrorResponse | None:
    if response.status_code == 200:
        response_200 = BlobInfo.from_dict(response.json())

        return response_200

    if response.status_code == 201:
        response_201 = BlobInfo.from_dict(response.json())

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
) -> Response[BlobInfo | ErrorResponse | ValidationErrorResponse]:
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
    body: CompleteUpload,
) -> Response[BlobInfo | ErrorResponse | ValidationErrorResponse]:
    """Complete Blob Upload

     Finish an upload planned by ``POST /api/blobs/uploads``: the store checks that the
    uploaded bytes hash to *digest* before the blob becomes the VO's.

    Args:
        digest (str): SHA-256 of the blob (64 lowercase hex digits)
        body (CompleteUpload):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[BlobInfo | ErrorResponse | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        digest=digest,
        body=body,
    )

    response = client.get_httpx_client().request(
        **kwargs,
    )

    return _build_response(client=client, response=response)


def sync(
    digest: str,
    *,
    client: AuthenticatedClient,
    body: CompleteUpload,
) -> BlobInfo | ErrorResponse | ValidationErrorResponse | None:
    """Complete Blob Upload

     Finish an upload planned by ``POST /api/blobs/uploads``: the store checks that the
    uploaded bytes hash to *digest* before the blob becomes the VO's.

    Args:
        digest (str): SHA-256 of the blob (64 lowercase hex digits)
        body (CompleteUpload):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        BlobInfo | ErrorResponse | ValidationErrorResponse
    """

    return sync_detailed(
        digest=digest,
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    digest: str,
    *,
    client: AuthenticatedClient,
    body: CompleteUpload,
) -> Response[BlobInfo | ErrorResponse | ValidationErrorResponse]:
    """Complete Blob Upload

     Finish an upload planned by ``POST /api/blobs/uploads``: the store checks that the
    uploaded bytes hash to *digest* before the blob becomes the VO's.

    Args:
        digest (str): SHA-256 of the blob (64 lowercase hex digits)
        body (CompleteUpload):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[BlobInfo | ErrorResponse | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        digest=digest,
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    digest: str,
    *,
    client: AuthenticatedClient,
    body: CompleteUpload,
) -> BlobInfo | ErrorResponse | ValidationErrorResponse | None:
    """Complete Blob Upload

     Finish an upload planned by ``POST /api/blobs/uploads``: the store checks that the
    uploaded bytes hash to *digest* before the blob becomes the VO's.

    Args:
        digest (str): SHA-256 of the blob (64 lowercase hex digits)
        body (CompleteUpload):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        BlobInfo | ErrorResponse | ValidationErrorResponse
    """

    return (
        await asyncio_detailed(
            digest=digest,
            client=client,
            body=body,
        )
    ).parsed
