"""The OAuth 2 token endpoint and its companions, under ``/api/auth``.

- ``POST /api/auth/token`` (RFC 6749, form-encoded): ``grant_type`` is
  ``refresh_token`` (rotated on every use), ``client_credentials`` (service accounts of
  the configuration; an access token only) or the device code of RFC 8628 (``dirac
  login``). Errors are RFC 6749 JSON: ``{"error": ..., "error_description": ...}``.
- ``POST /api/auth/revoke`` (RFC 7009): revokes the login (token family) of a refresh
  or access token; unknown tokens are answered 200 too.
- ``GET /api/auth/userinfo``: who the token is for (``dirac whoami``).

The first two are public: they authenticate by the grant itself.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any
from urllib.parse import unquote_plus

from fastapi import APIRouter, Form, Request, Response
from pydantic import BaseModel

from diracx.core.config import Config
from diracx.core.passwords import PasswordHashError, verify_password
from diracx.core.settings import ServiceSettings
from diracx.routers.auth import AuthenticatedAccess, CurrentUser, PublicAccess
from diracx.routers.dependencies import ConfigDep
from diracx.routers.oauth import DEVICE_CODE_GRANT, Identity, OAuthError, TokenResponse
from diracx.routers.routing import DiracxRouter
from diracx.routers.tokens import TokenServiceDep

REFRESH_TOKEN_GRANT = "refresh_token"
CLIENT_CREDENTIALS_GRANT = "client_credentials"
GRANT_TYPES = (REFRESH_TOKEN_GRANT, CLIENT_CREDENTIALS_GRANT, DEVICE_CODE_GRANT)


class OAuthErrorResponse(BaseModel):
    """RFC 6749 section 5.2."""

    error: str
    error_description: str


class UserInfo(BaseModel):
    """Who a token is for, and what it may do."""

    sub: str
    preferred_username: str
    vo: str
    group: str
    properties: list[str]


OAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OAuthErrorResponse, "description": "RFC 6749 error (invalid_grant...)"},
    401: {"model": OAuthErrorResponse, "description": "The client failed to authenticate"},
}

FormField = Annotated[str | None, Form()]

public = DiracxRouter(policy=PublicAccess(), path_root="/api")
authenticated = DiracxRouter(policy=AuthenticatedAccess(), path_root="/api")


def _no_store(response: Response) -> None:
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


def _basic_credentials(request: Request) -> tuple[str, str] | None:
    """The client id and secret of an ``Authorization: Basic`` header (RFC 6749 2.3.1)."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError("invalid_client", "malformed HTTP Basic credentials", 401) from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise OAuthError("invalid_client", "malformed HTTP Basic credentials", 401)
    return unquote_plus(client_id), unquote_plus(secret)


def service_account_identity(config: Config, client_id: str, client_secret: str) -> Identity:
    """The identity of a service account whose secret is right (``invalid_client`` if not)."""
    account = config.service_accounts.get(client_id)
    try:
        ok = verify_password(client_secret, account.secret_hash if account else None)
    except PasswordHashError:
        ok = False  # a bad hash in the configuration: no secret matches it
    if account is None or not ok:
        raise OAuthError("invalid_client", "unknown client, or wrong client secret", 401)
    return Identity(
        sub=client_id,
        preferred_username=client_id,
        vo=account.vo,
        group=account.group,
        client_id=client_id,
    )


async def _device_code_identity(request: Request, device_code: str, client_id: str) -> Identity:
    # imported here: the device flow is a module of its own (and may be left out)
    try:
        from diracx.routers.device_flow import get_device_flow_db, redeem_device_code
    except ImportError:
        raise OAuthError(
            "unsupported_grant_type", "this service does not offer the device flow"
        ) from None
    db = get_device_flow_db(request)
    settings: ServiceSettings = request.app.state.settings
    interval = settings.device_flow_interval
    return await redeem_device_code(db, device_code, client_id, interval)


@public.post(
    "/token",
    responses=OAUTH_ERRORS,
    response_model_exclude_none=True,
)
async def issue_token(
    request: Request,
    response: Response,
    config: ConfigDep,
    service: TokenServiceDep,
    grant_type: FormField = None,
    refresh_token: FormField = None,
    device_code: FormField = None,
    client_id: FormField = None,
    client_secret: FormField = None,
    scope: FormField = None,  # accepted; the scope follows from the group
) -> TokenResponse:
    """The OAuth 2 token endpoint (form-encoded, RFC 6749): refresh_token,
    client_credentials and device_code grants."""
    _no_store(response)
    if not grant_type:
        raise OAuthError("invalid_request", "grant_type is required")
    if grant_type == REFRESH_TOKEN_GRANT:
        if not refresh_token:
            raise OAuthError("invalid_request", "refresh_token is required")
        return await service.refresh(refresh_token, config)
    if grant_type == CLIENT_CREDENTIALS_GRANT:
        basic = _basic_credentials(request)
        if basic is not None and (client_secret is not None or client_id not in (None, basic[0])):
            raise OAuthError(
                "invalid_request", "give the client credentials once: HTTP Basic or the form"
            )
        if basic is None:
            if not client_id or client_secret is None:
                raise OAuthError("invalid_client", "client_id and client_secret are required", 401)
            basic = (client_id, client_secret)
        identity = service_account_identity(config, *basic)
        return await service.issue(identity, config, refresh=False)
    if grant_type == DEVICE_CODE_GRANT:
        if not device_code or not client_id:
            raise OAuthError("invalid_request", "device_code and client_id are required")
        identity = await _device_code_identity(request, device_code, client_id)
        return await service.issue(identity, config)
    raise OAuthError(
        "unsupported_grant_type",
        f"grant_type {grant_type[:100]!r} is not supported; use one of {', '.join(GRANT_TYPES)}",
    )


@public.post("/revoke", responses=OAUTH_ERRORS)
async def revoke_token(
    response: Response,
    service: TokenServiceDep,
    token: FormField = None,
    token_type_hint: FormField = None,  # both kinds are recognised anyway
) -> None:
    """RFC 7009: revoke the login (every refresh and access token) a token belongs to.

    Unknown or already revoked tokens are answered 200 as well.
    """
    _no_store(response)
    if not token:
        raise OAuthError("invalid_request", "token is required")
    await service.revoke(token)


@authenticated.get("/userinfo")
async def userinfo(user: CurrentUser) -> UserInfo:
    """Who the bearer token is for: VO, group and properties (``dirac whoami``)."""
    return UserInfo(
        sub=user.sub,
        preferred_username=user.preferred_username,
        vo=user.vo,
        group=user.group,
        properties=user.properties,
    )


# One service (one entry point) with two policies: public grants, and the token holder.
router = APIRouter(prefix="/auth", tags=["auth"])
router.include_router(public)
router.include_router(authenticated)
