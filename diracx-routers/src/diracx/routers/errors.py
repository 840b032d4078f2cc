"""Errors as JSON with a clear message: ``{"detail": "..."}``, never a 500 for bad input."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from diracx.core.exceptions import (
    ConflictError,
    CorruptObjectError,
    DiracxError,
    ForbiddenError,
    InvalidPipelineError,
    InvalidTreeError,
    ObjectNotFoundError,
    VersionMismatchError,
)
from diracx.routers.oauth import OAuthError
from diracx.routers.params import DIGEST_PATTERN

logger = logging.getLogger(__name__)


class ErrorResponse(BaseModel):
    """Every error the service reports."""

    detail: str


class ValidationProblem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorResponse(BaseModel):
    """A request that does not match the schema (422): one readable line, then each problem."""

    detail: str
    errors: list[ValidationProblem]


# The most specific class wins (looked up along the exception's MRO).
STATUS_OF: dict[type[DiracxError], int] = {
    DiracxError: status.HTTP_400_BAD_REQUEST,
    InvalidPipelineError: status.HTTP_400_BAD_REQUEST,
    InvalidTreeError: status.HTTP_400_BAD_REQUEST,
    ObjectNotFoundError: status.HTTP_404_NOT_FOUND,
    ConflictError: status.HTTP_409_CONFLICT,
    ForbiddenError: status.HTTP_403_FORBIDDEN,
    # Raised while reading: the store holds bad bytes, the caller did nothing wrong.
    # (A bad upload is turned into a 400 by the blob logic.)
    CorruptObjectError: status.HTTP_500_INTERNAL_SERVER_ERROR,
    VersionMismatchError: status.HTTP_500_INTERNAL_SERVER_ERROR,
}


def status_of(exc: DiracxError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return status.HTTP_400_BAD_REQUEST


def _message(error: dict[str, Any]) -> str:
    kind, ctx = error.get("type"), error.get("ctx") or {}
    if kind == "string_pattern_mismatch" and ctx.get("pattern") == DIGEST_PATTERN:
        return f"not a SHA-256 digest (64 lowercase hex digits): {str(error.get('input'))[:80]!r}"
    if kind == "json_invalid":
        return f"malformed JSON: {ctx.get('error', 'cannot be parsed')}"
    return str(error.get("msg", "invalid value")).removeprefix("Value error, ")


def _location(error: dict[str, Any]) -> list[str | int]:
    loc = tuple(error.get("loc", ()))
    if error.get("type") == "json_invalid":  # FastAPI puts the character offset last
        loc = tuple(p for p in loc if not isinstance(p, int))
    return [part if isinstance(part, int) else str(part) for part in loc]


def describe_validation_errors(errors: list[dict[str, Any]]) -> ValidationErrorResponse:
    """Turn pydantic's errors into messages (inputs are left out: they may not be JSON)."""
    problems = [
        ValidationProblem(
            loc=_location(e),
            msg=_message(e),
            type=str(e.get("type", "value_error")),
        )
        for e in errors
    ]
    lines = [
        f"{'.'.join(str(p) for p in problem.loc) or 'request'}: {problem.msg}"
        for problem in problems[:10]
    ]
    if len(problems) > 10:
        lines.append(f"... and {len(problems) - 10} more problems")
    return ValidationErrorResponse(detail="invalid request: " + "; ".join(lines), errors=problems)


async def diracx_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DiracxError)
    code = status_of(exc)
    if code >= 500:
        logger.error("%s %s failed: %s", request.method, request.url.path, exc)
    return JSONResponse({"detail": str(exc)}, status_code=code)


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    body = describe_validation_errors(list(exc.errors()))
    return JSONResponse(body.model_dump(), status_code=status.HTTP_422_UNPROCESSABLE_CONTENT)


async def recursion_error_handler(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "the request is nested too deeply to be processed"},
        status_code=status.HTTP_400_BAD_REQUEST,
    )


async def oauth_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """RFC 6749 errors (``{"error": ..., "error_description": ...}``) of the OAuth routes."""
    assert isinstance(exc, OAuthError)
    return exc.response()


async def internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Last resort: still JSON (the exception itself is logged by the server)."""
    return JSONResponse(
        {"detail": f"internal server error ({type(exc).__name__}): see the service log"},
        status_code=status.HTTP_500_INTERNAL_SERVER_ERROR,
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DiracxError, diracx_error_handler)
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(RecursionError, recursion_error_handler)
    app.add_exception_handler(OAuthError, oauth_error_handler)
    app.add_exception_handler(Exception, internal_error_handler)


# Added to the OpenAPI of every protected DiracX route.
CLIENT_VERSION_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorResponse, "description": "Bad request, or a client older than the minimum"},
}
# Added to the OpenAPI of every DiracX route (instead of FastAPI's HTTPValidationError).
VALIDATION_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ValidationErrorResponse, "description": "The request does not match the schema"},
}
