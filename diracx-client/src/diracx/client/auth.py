"""OAuth 2 as ``dirac login`` speaks it with a DiracX service, over httpx.

- the device authorization grant (RFC 8628): ``POST /api/auth/device``, then polling
  ``POST /api/auth/token`` at the interval the service asks (5 s more after each
  ``slow_down``; backing off while the service cannot be reached) until the user approved
  in a browser, refused, or the code expired;
- refreshing (RFC 6749 section 6; the service rotates refresh tokens on every use);
- revoking (RFC 7009, ``POST /api/auth/revoke``), and ``GET /api/auth/userinfo``.

Endpoints are paths of the service's own URL (the one the user gave), not of its
advertised issuer: the issuer may be a name that only works elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import BaseModel, ValidationError

from diracx.client.credentials import Login
from diracx.core.exceptions import DiracxError, ServiceUnavailableError
from diracx.core.version import __version__

CLIENT_ID = "dirac-cli"
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEVICE_PATH = "/api/auth/device"
TOKEN_PATH = "/api/auth/token"
REVOKE_PATH = "/api/auth/revoke"
USERINFO_PATH = "/api/auth/userinfo"
DEFAULT_INTERVAL = 5.0  # RFC 8628 section 3.2: when the service does not say
SLOW_DOWN_STEP = 5.0  # RFC 8628 section 3.5
MAX_BACKOFF = 60.0  # seconds between polls while the service cannot be reached
TIMEOUT = 30.0

Sleep = Callable[[float], Awaitable[None]]


class OAuthClientError(DiracxError):
    """The service answered an OAuth error (``invalid_grant``, ``access_denied``...)."""

    def __init__(self, error: str, description: str, status: int) -> None:
        super().__init__(f"{description} ({error})" if description else error)
        self.error = error
        self.description = description
        self.status = status


class DeviceFlowError(DiracxError):
    """The device login ended without tokens: refused, expired."""

    def __init__(self, error: str, message: str) -> None:
        super().__init__(message)
        self.error = error


@dataclass(frozen=True)
class DeviceAuthorization:
    """RFC 8628 section 3.2: what the user is shown, and what the client polls with."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


@dataclass(frozen=True)
class TokenSet:
    """RFC 6749 section 5.1."""

    access_token: str
    expires_in: float
    refresh_token: str | None = None
    scope: str | None = None
    refresh_expires_in: float | None = None  # not in the RFC: used if the service sends it

    def to_login(self, now: float | None = None, previous: Login | None = None) -> Login:
        """The login to store (a refresh without a new refresh token keeps the old one)."""
        now = time.time() if now is None else now
        claims = jwt_claims(self.access_token)
        scope = self.scope or (previous.scope if previous else None)
        vo, group = scope_vo_group(scope)
        refresh_token = self.refresh_token
        refresh_expires_at = (
            now + self.refresh_expires_in if self.refresh_expires_in is not None else None
        )
        if refresh_token is None and previous is not None:
            refresh_token, refresh_expires_at = previous.refresh_token, previous.refresh_expires_at
        return Login(
            access_token=self.access_token,
            expires_at=now + self.expires_in,
            refresh_token=refresh_token,
            refresh_expires_at=refresh_expires_at,
            vo=vo or _str(claims.get("vo")) or (previous.vo if previous else None),
            group=group
            or _str(claims.get("dirac_group"))
            or (previous.group if previous else None),
            scope=scope,
        )


class UserInfo(BaseModel):
    """``GET /api/auth/userinfo``: who a token stands for."""

    sub: str
    preferred_username: str | None = None
    vo: str
    group: str
    properties: list[str] = []


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def scope_for(vo: str | None, group: str | None) -> str:
    """The scope a login asks for: ``vo:<vo> group:<group>`` (either may be left out)."""
    return " ".join(p for p in (f"vo:{vo}" if vo else "", f"group:{group}" if group else "") if p)


def scope_vo_group(scope: str | None) -> tuple[str | None, str | None]:
    """The VO and group a scope names."""
    vo = group = None
    for part in (scope or "").split():
        if part.startswith("vo:"):
            vo = part[3:]
        elif part.startswith("group:"):
            group = part[6:]
    return vo, group


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT, *unverified* (to show its expiry; the service verifies it);
    {} for a token that is not a JWT (the embedded engine's)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, TypeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def jwt_expiry(token: str) -> float | None:
    exp = jwt_claims(token).get("exp")
    return float(exp) if isinstance(exp, int | float) else None


# --------------------------------------------------------------------------- HTTP


@asynccontextmanager
async def oauth_client(url: str, *, timeout: float = TIMEOUT) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client for the service at *url*'s OAuth endpoints."""
    url = url.rstrip("/")
    async with httpx.AsyncClient(
        base_url=url,
        headers={"DiracX-Client-Version": __version__, "Accept": "application/json"},
        verify=not url.startswith("http://"),
        timeout=httpx.Timeout(timeout, connect=10.0),
    ) as http:
        yield http


def _unreachable(http: httpx.AsyncClient, exc: httpx.TransportError) -> ServiceUnavailableError:
    reason = str(exc) or type(exc).__name__
    return ServiceUnavailableError(
        f"cannot reach the DiracX service at {http.base_url}: {reason} (try again once it is back)"
    )


def _json(http: httpx.AsyncClient, response: httpx.Response) -> dict[str, Any]:
    """The response's JSON object; an OAuth error answer becomes OAuthClientError."""
    try:
        doc = response.json()
    except ValueError:
        doc = None
    if response.status_code >= 400:
        if isinstance(doc, dict) and isinstance(doc.get("error"), str):
            raise OAuthClientError(
                doc["error"], str(doc.get("error_description") or ""), response.status_code
            )
        detail = doc.get("detail") if isinstance(doc, dict) else None
        text = detail if isinstance(detail, str) else response.text.strip()[:300]
        if response.status_code >= 500:
            raise ServiceUnavailableError(
                f"the DiracX service at {http.base_url} failed (HTTP {response.status_code}): "
                f"{text} (try again later)"
            )
        raise DiracxError(
            f"{response.request.url.path} answered HTTP {response.status_code}: {text}"
        )
    if not isinstance(doc, dict):
        raise DiracxError(
            f"unexpected answer from {response.request.url}: is {http.base_url} a DiracX "
            "service (DIRACX_URL)?"
        )
    return doc


async def _post(http: httpx.AsyncClient, path: str, form: dict[str, str]) -> dict[str, Any]:
    try:
        response = await http.post(path, data=form)
    except httpx.TransportError as exc:
        raise _unreachable(http, exc) from exc
    return _json(http, response)


def _number(doc: dict[str, Any], key: str, default: float | None = None) -> float:
    value = doc.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise DiracxError(f"the service's answer lacks a valid {key!r}")
    return float(value)


def _token_set(doc: dict[str, Any]) -> TokenSet:
    access = doc.get("access_token")
    if not isinstance(access, str) or not access:
        raise DiracxError("the service's token answer has no access_token")
    refresh = doc.get("refresh_token")
    refresh_in = doc.get("refresh_expires_in", doc.get("refresh_token_expires_in"))
    expires_in = doc.get("expires_in")
    if not isinstance(expires_in, int | float):
        # RFC 6749 makes expires_in optional: fall back on the JWT's own expiry
        exp = jwt_expiry(access)
        expires_in = exp - time.time() if exp is not None else 0.0
    return TokenSet(
        access_token=access,
        expires_in=float(expires_in),
        refresh_token=refresh if isinstance(refresh, str) and refresh else None,
        scope=_str(doc.get("scope")),
        refresh_expires_in=float(refresh_in) if isinstance(refresh_in, int | float) else None,
    )


# --------------------------------------------------------------------------- the grants


async def start_device_flow(
    http: httpx.AsyncClient,
    *,
    vo: str | None = None,
    group: str | None = None,
    client_id: str = CLIENT_ID,
) -> DeviceAuthorization:
    """RFC 8628 section 3.1: ask for a device code and a user code."""
    form = {"client_id": client_id}
    scope = scope_for(vo, group)
    if scope:
        form["scope"] = scope
    doc = await _post(http, DEVICE_PATH, form)
    try:
        return DeviceAuthorization(
            device_code=str(doc["device_code"]),
            user_code=str(doc["user_code"]),
            verification_uri=str(doc["verification_uri"]),
            verification_uri_complete=_str(doc.get("verification_uri_complete")),
            expires_in=_number(doc, "expires_in"),
            interval=_number(doc, "interval", DEFAULT_INTERVAL),
        )
    except KeyError as exc:
        raise DiracxError(f"the service's device authorization answer lacks {exc}") from None


WaitCallback = Callable[[str, float, float], None]


async def poll_device_flow(
    http: httpx.AsyncClient,
    device: DeviceAuthorization,
    *,
    client_id: str = CLIENT_ID,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    on_wait: WaitCallback | None = None,
) -> TokenSet:
    """RFC 8628 section 3.4/3.5: poll the token endpoint until the user decided.

    *on_wait(reason, interval, seconds_left)* is called before each wait; reason is
    ``pending``, ``slow_down`` or ``unreachable``.
    """
    interval = max(device.interval, 1.0)
    backoff = interval
    deadline = clock() + device.expires_in
    form = {
        "grant_type": DEVICE_CODE_GRANT,
        "device_code": device.device_code,
        "client_id": client_id,
    }
    reason = "pending"
    while True:
        wait = backoff if reason == "unreachable" else interval
        left = deadline - clock()
        if left <= 0:
            raise DeviceFlowError(
                "expired_token",
                "the login code expired before it was approved: run `dirac login` again",
            )
        if on_wait is not None:
            on_wait(reason, wait, left)
        await sleep(min(wait, max(left, 0.0)))
        try:
            return _token_set(await _post(http, TOKEN_PATH, form))
        except ServiceUnavailableError:
            # RFC 8628 section 3.5: back off while the service cannot answer
            reason = "unreachable"
            backoff = min(backoff * 2, MAX_BACKOFF)
            continue
        except OAuthClientError as exc:
            error = exc
        reason = error.error
        backoff = interval
        if error.error == "authorization_pending":
            reason = "pending"
        elif error.error == "slow_down":
            interval += SLOW_DOWN_STEP
        elif error.error == "expired_token":
            raise DeviceFlowError(
                "expired_token",
                "the login code expired before it was approved: run `dirac login` again",
            )
        elif error.error == "access_denied":
            raise DeviceFlowError("access_denied", "the login was refused in the browser")
        else:
            raise DeviceFlowError(error.error, f"the login failed: {error}")


async def refresh(
    http: httpx.AsyncClient, refresh_token: str, *, client_id: str = CLIENT_ID
) -> TokenSet:
    """RFC 6749 section 6: a new access token (and, rotated, a new refresh token)."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
    return _token_set(await _post(http, TOKEN_PATH, form))


async def revoke(
    http: httpx.AsyncClient,
    token: str,
    *,
    hint: str = "refresh_token",
    client_id: str = CLIENT_ID,
) -> None:
    """RFC 7009: revoke *token* (the service answers 200 even for a token it does not know)."""
    form = {"token": token, "token_type_hint": hint, "client_id": client_id}
    try:
        response = await http.post(REVOKE_PATH, data=form)
    except httpx.TransportError as exc:
        raise _unreachable(http, exc) from exc
    if response.status_code >= 400:
        _json(http, response)


async def userinfo(http: httpx.AsyncClient, access_token: str) -> UserInfo:
    """Who *access_token* stands for."""
    try:
        response = await http.get(
            USERINFO_PATH, headers={"Authorization": f"Bearer {access_token}"}
        )
    except httpx.TransportError as exc:
        raise _unreachable(http, exc) from exc
    doc = _json(http, response)
    try:
        return UserInfo.model_validate(doc)
    except ValidationError as exc:
        raise DiracxError(f"unexpected userinfo answer from {http.base_url}: {exc}") from None
