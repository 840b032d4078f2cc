from http import HTTPStatus
from typing import Any

import httpx

from ... import errors
from ...client import AuthenticatedClient, Client
from ...models.blob_upload import BlobUpload
from ...models.error_response import ErrorResponse
from ...models.upload_plans import UploadPlans
from ...models.validation_error_response import ValidationErrorResponse
from ...types import Response


def _get_kwargs(
    *,
    body: list[BlobUpload],
) -> dict[str, Any]:
    headers: dict[str, Any] = {}

    _kwargs: dict[str, Any] = {
        "method": "post",
        "url": "/api/blobs/uploads",
    }

    _kwargs["json"] = []
    for body_item_data in body:
        body_item = body_item_data.to_dict()
        _kwargs["json"].append(body_item)

    headers["Content-Type"] = "application/json"

    _kwargs["headers"] = headers
    return _kwargs


def _parse_response(
    *, client: AuthenticatedClient | Client, response: httpx.Response
) -> ErrorResponse | UploadPlans | ValidationErrorResponse | None:
    if response.status_code == 200:
        response_200 = UploadPlans.from_dict(response.json())

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
) -> Response[ErrorResponse | UploadPlans | ValidationErrorResponse]:
    return Response(
        status_code=HTTPStatus(response.status_code),
        content=response.content,
        headers=response.headers,
        parsed=_parse_response(client=client, response=response),
    )


def sync_detailed(
    *,
    client: AuthenticatedClient,
    body: list[BlobUpload],
) -> Response[ErrorResponse | UploadPlans | ValidationErrorResponse]:
    """Plan Blob Uploads

     How to upload each of these blobs the caller's VO lacks (those it has are left
    out; a blob the store holds for another VO must be sent all the same).

    A ``single`` plan: send the whole blob with ``method`` to ``url`` with ``headers``
    (a relative URL is the service itself: send the usual credentials; an absolute
    one is the object store: send none), then, if ``upload_id`` is set, complete it.
    A ``multipart`` plan: PUT bytes ``[(n-1)*part_size, n*part_size)`` to part *n*'s
    URL, in any order, then complete it. The store checks the digest on completion.

    Args:
        body (list[BlobUpload]):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | UploadPlans | ValidationErrorResponse]
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
    body: list[BlobUpload],
) -> ErrorResponse | UploadPlans | ValidationErrorResponse | None:
    """Plan Blob Uploads

     How to upload each of these blobs the caller's VO lacks (those it has are left
    out; a blob the store holds for another VO must be sent all the same).

    A ``single`` plan: send the whole blob with ``method`` to ``url`` with ``headers``
    (a relative URL is the service itself: send the usual credentials; an absolute
    one is the object store: send none), then, if ``upload_id`` is set, complete it.
    A ``multipart`` plan: PUT bytes ``[(n-1)*part_size, n*part_size)`` to part *n*'s
    URL, in any order, then complete it. The store checks the digest on completion.

    Args:
        body (list[BlobUpload]):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | UploadPlans | ValidationErrorResponse
    """

    return sync_detailed(
        client=client,
        body=body,
    ).parsed


async def asyncio_detailed(
    *,
    client: AuthenticatedClient,
    body: list[BlobUpload],
) -> Response[ErrorResponse | UploadPlans | ValidationErrorResponse]:
    """Plan Blob Uploads

     How to upload each of these blobs the caller's VO lacks (those it has are left
    out; a blob the store holds for another VO must be sent all the same).

    A ``single`` plan: send the whole blob with ``method`` to ``url`` with ``headers``
    (a relative URL is the service itself: send the usual credentials; an absolute
    one is the object store: send none), then, if ``upload_id`` is set, complete it.
    A ``multipart`` plan: PUT bytes ``[(n-1)*part_size, n*part_size)`` to part *n*'s
    URL, in any order, then complete it. The store checks the digest on completion.

    Args:
        body (list[BlobUpload]):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        Response[ErrorResponse | UploadPlans | ValidationErrorResponse]
    """

    kwargs = _get_kwargs(
        body=body,
    )

    response = await client.get_async_httpx_client().request(**kwargs)

    return _build_response(client=client, response=response)


async def asyncio(
    *,
    client: AuthenticatedClient,
    body: list[BlobUpload],
) -> ErrorResponse | UploadPlans | ValidationErrorResponse | None:
    """Plan Blob Uploads

     How to upload each of these blobs the caller's VO lacks (those it has are left
    out; a blob the store holds for another VO must be sent all the same).

    A ``single`` plan: send the whole blob with ``method`` to ``url`` with ``headers``
    (a relative URL is the service itself: send the usual credentials; an absolute
    one is the object store: send none), then, if ``upload_id`` is set, complete it.
    A ``multipart`` plan: PUT bytes ``[(n-1)*part_size, n*part_size)`` to part *n*'s
    URL, in any order, then complete it. The store checks the digest on completion.

    Args:
        body (list[BlobUpload]):

    Raises:
        errors.UnexpectedStatus: If the server returns an undocumented status code and Client.raise_on_unexpected_status is True.
        httpx.TimeoutException: If the request takes longer than Client.timeout.

    Returns:
        ErrorResponse | UploadPlans | ValidationErrorResponse
    """

    return (
        await asyncio_detailed(
            client=client,
            body=body,
        )
    ).parsed
