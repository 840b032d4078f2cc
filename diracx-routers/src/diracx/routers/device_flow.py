"""``dirac login``: the device authorization grant (RFC 8628) and its browser step.

1. The client asks ``POST /api/auth/device`` (``client_id``, ``scope``: ``vo:<vo>``,
   optionally ``group:<group>``) and gets a device code, a user code and the
   verification URL ``{public_url}/api/auth/device``.
2. The user opens that URL (``?user_code=...``) in a browser. A VO with an
   ``identity_provider`` sends the browser there (authorization code with PKCE, state
   and nonce), and the provider sends it back to ``GET /api/auth/device/callback``;
   a VO without one shows a login form for the built-in accounts
   (``POST /api/auth/device/login``). Either way the request is approved for the
   user's subject, if the configuration makes them a member of the VO (and group).
3. Meanwhile the client polls the token endpoint with the device code; the token
   endpoint calls :func:`redeem_device_code`, which answers ``authorization_pending``,
   ``slow_down``, ``expired_token``, ``access_denied`` or ``invalid_grant``, or — once,
   for an approved request — the :class:`~diracx.routers.oauth.Identity` to issue
   tokens for.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import Depends, Form, Query, Request, Response, status
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import BaseModel

from diracx.core.config import Config, VOConfig
from diracx.core.passwords import PasswordHashError, verify_password
from diracx.core.settings import ServiceSettings
from diracx.db.device_flows import DeviceFlow, DeviceFlowDB, FlowStatus
from diracx.routers import login_pages
from diracx.routers.auth import PublicAccess
from diracx.routers.dependencies import ConfigDep, Settings, db_on_engines
from diracx.routers.oauth import Identity, OAuthError
from diracx.routers.oidc_client import (
    IdentityProviderError,
    LoginFailedError,
    RelyingParty,
    pkce_pair,
)
from diracx.routers.routing import DiracxRouter
from diracx.routers.token_endpoint import OAuthErrorResponse

logger = logging.getLogger(__name__)

DEVICE_PATH = "/api/auth/device"
LOGIN_PATH = "/api/auth/device/login"
CALLBACK_PATH = "/api/auth/device/callback"
URLSAFE = re.compile(r"[A-Za-z0-9_-]+")  # what secrets.token_urlsafe makes
POLL_INTERVAL = 5  # the default seconds between two polls (settings.device_flow_interval)
# A poll this much earlier than the interval still counts as on time (network jitter).
POLL_TOLERANCE = timedelta(seconds=1)
# RFC 8628 section 6.1: consonants only (no words, no 0/O or 1/I confusion), 20**8 codes.
USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"
USER_CODE_LENGTH = 8
CODE_ATTEMPTS = 5  # user codes drawn before giving up (a clash is already unlikely)
# OpenID Connect scopes a client may add; they change nothing here.
IGNORED_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
CLIENT_ID = re.compile(r"^[\x21-\x7e]{1,255}$")  # RFC 6749 appendix A.1, without spaces
MAX_SCOPE = 1024


# -- dependencies ------------------------------------------------------------------


def get_device_flow_db(request: Request) -> DeviceFlowDB:
    """The device flows' DB."""
    return db_on_engines(request, DeviceFlowDB)


def get_relying_party(request: Request) -> RelyingParty:
    """The app's OpenID Connect client (it caches the providers' metadata and keys)."""
    party: RelyingParty | None = getattr(request.app.state, "oidc_relying_party", None)
    if party is None:
        party = request.app.state.oidc_relying_party = RelyingParty()
    return party


DeviceFlowDBDep = Annotated[DeviceFlowDB, Depends(get_device_flow_db)]
RelyingPartyDep = Annotated[RelyingParty, Depends(get_relying_party)]


# -- codes and scopes ---------------------------------------------------------------


def hash_device_code(device_code: str) -> str:
    """What the database keeps of a device code: its SHA-256, in hex."""
    return hashlib.sha256(device_code.encode()).hexdigest()


def new_user_code() -> str:
    return "".join(secrets.choice(USER_CODE_ALPHABET) for _ in range(USER_CODE_LENGTH))


def format_user_code(code: str) -> str:
    """``BCDFGHJK`` as the user reads it: ``BCDF-GHJK``."""
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


def normalize_user_code(text: str) -> str | None:
    """A typed user code as stored: case, dashes and spaces do not matter (RFC 8628
    6.1); None if it cannot be one."""
    code = re.sub(r"[\s-]", "", text).upper()
    if len(code) != USER_CODE_LENGTH or not set(code) <= set(USER_CODE_ALPHABET):
        return None
    return code


@dataclass(frozen=True)
class RequestedScope:
    vo: str
    group: str | None
    scope: str  # normalized: "vo:<vo> [group:<group>] [property:<p>...]"


def parse_scope(scope: str, config: Config) -> RequestedScope:
    """The VO and group a device authorization request names (``invalid_scope`` if
    they are unknown, ``invalid_request`` if the scope is malformed)."""
    if len(scope) > MAX_SCOPE:
        raise OAuthError("invalid_scope", f"the scope is longer than {MAX_SCOPE} characters")
    vos: list[str] = []
    groups: list[str] = []
    properties: list[str] = []
    for item in scope.split():
        kind, _, value = item.partition(":")
        if kind == "vo" and value:
            vos.append(value)
        elif kind == "group" and value:
            groups.append(value)
        elif kind == "property" and value:
            properties.append(value)
        elif item not in IGNORED_SCOPES:
            raise OAuthError(
                "invalid_scope", f"unknown scope {item[:64]!r}: use vo:<vo> and group:<group>"
            )
    if len(vos) > 1 or len(groups) > 1:
        raise OAuthError("invalid_request", "the scope names more than one VO or group")
    if vos:
        vo = vos[0]
    elif len(config.vos) == 1:
        vo = next(iter(config.vos))
    else:
        raise OAuthError("invalid_scope", "name the VO to log in to: scope=vo:<vo>")
    vo_config = config.vos.get(vo)
    if vo_config is None:
        raise OAuthError("invalid_scope", f"unknown VO {vo[:64]!r}")
    group = groups[0] if groups else None
    if group is not None and group not in vo_config.groups:
        raise OAuthError("invalid_scope", f"VO {vo!r} has no group {group[:64]!r}")
    # A token carries its group's properties; asking for others is an error, not a no-op.
    held = set(vo_config.groups[group or vo_config.default_group].properties)
    lacking = sorted(set(properties) - held)
    if lacking:
        raise OAuthError(
            "invalid_scope",
            f"group {group or vo_config.default_group!r} does not hold {', '.join(lacking)[:128]}",
        )
    parts = [f"vo:{vo}", *([f"group:{group}"] if group else [])]
    parts += [f"property:{p}" for p in dict.fromkeys(properties)]
    return RequestedScope(vo=vo, group=group, scope=" ".join(parts))


class LoginRefusedError(Exception):
    """The user authenticated, but may not log in to this VO or group."""


def choose_group(vo: str, vo_config: VOConfig, subject: str, requested: str | None) -> str:
    """The group of a user's login: the one asked for, else the VO's default group if
    they are in it, else their first group."""
    user = vo_config.users.get(subject)
    if user is None:
        raise LoginRefusedError(f"{subject!r} is not a member of VO {vo!r}")
    if requested is not None:
        if requested not in user.groups:
            raise LoginRefusedError(f"{subject!r} is not in group {requested!r} of VO {vo!r}")
        return requested
    return vo_config.default_group if vo_config.default_group in user.groups else user.groups[0]


def display_name(vo_config: VOConfig, subject: str, from_provider: str | None) -> str:
    """The configured name of the user, else the provider's, else the subject."""
    user = vo_config.users.get(subject)
    return (user.preferred_username if user else None) or from_provider or subject


# -- the token endpoint's part ---------------------------------------------------------


async def redeem_device_code(
    db: DeviceFlowDB, device_code: str, client_id: str, interval: int = POLL_INTERVAL
) -> Identity:
    """The identity an approved device code stands for, given once (RFC 8628 3.4, 3.5).

    Raises :class:`OAuthError`: ``authorization_pending`` (the user has not logged in
    yet), ``slow_down`` (polled faster than every *interval* seconds),
    ``expired_token``, ``access_denied`` (the user declined), ``invalid_grant`` (an
    unknown code, one issued to another client, or one already redeemed).
    """
    now = datetime.now(UTC)
    device_code_hash = hash_device_code(device_code)
    flow = await db.poll(device_code_hash, now)
    if flow is None or not secrets.compare_digest(flow.client_id, client_id):
        raise OAuthError("invalid_grant", "unknown device code: start again with `dirac login`")
    if flow.status is FlowStatus.CONSUMED:
        raise OAuthError("invalid_grant", "this device code was already used")
    if flow.expired(now):
        raise OAuthError("expired_token", "the device code expired: start again with `dirac login`")
    if flow.status is FlowStatus.DENIED:
        raise OAuthError("access_denied", "the login was denied in the browser")
    if flow.status is FlowStatus.PENDING:
        too_early = flow.last_poll is not None and (
            now - flow.last_poll
            < timedelta(seconds=interval) - min(POLL_TOLERANCE, timedelta(seconds=interval / 5))
        )
        if too_early:
            raise OAuthError(
                "slow_down", f"poll at most every {interval} seconds (add 5 seconds now)"
            )
        raise OAuthError("authorization_pending", "the user has not logged in yet")
    if (
        flow.sub is None
        or flow.group is None
        or not await db.consume(device_code_hash, client_id, now)
    ):
        raise OAuthError("invalid_grant", "this device code was already used")
    return Identity(
        sub=flow.sub,
        preferred_username=flow.preferred_username or flow.sub,
        vo=flow.vo,
        group=flow.group,
        client_id=flow.client_id,
    )


# -- routes ----------------------------------------------------------------------------

router = DiracxRouter(policy=PublicAccess(), prefix="/auth", tags=["auth"])


class DeviceAuthorizationResponse(BaseModel):
    """RFC 8628 section 3.2."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str
    expires_in: int
    interval: int


OAUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": OAuthErrorResponse, "description": "RFC 6749 error (invalid_scope...)"},
    503: {"model": OAuthErrorResponse, "description": "No user code free: try again"},
}
HTML: dict[str, Any] = {"content": {"text/html": {"schema": {"type": "string"}}}}
# The pages are HTML, but a request that does not match the schema is answered JSON.
JSON_422 = {
    "description": "The request does not match the schema",
    "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/ValidationErrorResponse"}}
    },
}


def _url(settings: ServiceSettings, path: str) -> str:
    return settings.public_url.rstrip("/") + path


@router.post("/device", responses=OAUTH_ERRORS)
async def device_authorization(
    settings: Settings,
    config: ConfigDep,
    db: DeviceFlowDBDep,
    response: Response,
    client_id: Annotated[str | None, Form()] = None,
    scope: Annotated[str | None, Form()] = None,
) -> DeviceAuthorizationResponse:
    """Start ``dirac login``: a device code for the client, a user code for the browser
    (RFC 8628 device authorization request). ``scope``: ``vo:<vo> [group:<group>]``."""
    if not client_id:
        raise OAuthError("invalid_request", "client_id is required")
    if not CLIENT_ID.match(client_id):
        raise OAuthError("invalid_request", "client_id must be 1 to 255 printable characters")
    requested = parse_scope(scope or "", config)
    device_code = secrets.token_urlsafe(32)
    created = datetime.now(UTC)
    for _ in range(CODE_ATTEMPTS):
        user_code = new_user_code()
        if await db.create(
            device_code_hash=hash_device_code(device_code),
            user_code=user_code,
            client_id=client_id,
            scope=requested.scope,
            vo=requested.vo,
            group=requested.group,
            created=created,
            expires=created + timedelta(seconds=settings.device_flow_lifetime),
        ):
            break
    else:  # pragma: no cover - 5 clashes among 20**8 codes
        raise OAuthError("temporarily_unavailable", "no free user code: try again", 503)
    response.headers["Cache-Control"] = "no-store"
    shown = format_user_code(user_code)
    verification_uri = _url(settings, DEVICE_PATH)
    return DeviceAuthorizationResponse(
        device_code=device_code,
        user_code=shown,
        verification_uri=verification_uri,
        verification_uri_complete=f"{verification_uri}?user_code={shown}",
        expires_in=settings.device_flow_lifetime,
        interval=settings.device_flow_interval,
    )


def _problem(flow: DeviceFlow | None, now: datetime) -> str | None:
    """Why *flow* cannot be logged in to (None: it can)."""
    if flow is None:
        return "This code is not valid: check it, or start again with `dirac login`."
    if flow.status is FlowStatus.APPROVED or flow.status is FlowStatus.CONSUMED:
        return "This code was already used to log in. Go back to your terminal."
    if flow.status is FlowStatus.DENIED:
        return "This login was denied. Start again with `dirac login`."
    if flow.expired(now):
        return "This code expired. Start again with `dirac login`."
    return None


async def _pending_flow(
    db: DeviceFlowDB, config: Config, user_code: str
) -> tuple[DeviceFlow, VOConfig] | str:
    """The pending request of *user_code* and its VO, or a message saying why not."""
    code = normalize_user_code(user_code)
    flow = await db.by_user_code(code) if code else None
    problem = _problem(flow, datetime.now(UTC))
    if problem or flow is None:
        return problem or ""
    vo_config = config.vos.get(flow.vo)
    if vo_config is None:
        return f"VO {flow.vo!r} is no longer configured on this service."
    return flow, vo_config


PAGE_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: JSON_422,
    400: {"description": "The code is not valid, expired or already used", **HTML},
}
IDP_DOWN: dict[int | str, dict[str, Any]] = {
    502: {"description": "The VO's identity provider cannot be used", **HTML},
}


@router.get(
    "/device",
    response_class=HTMLResponse,
    responses={
        200: HTML,
        302: {"description": "To the VO's OpenID Connect provider"},
        **PAGE_RESPONSES,
        **IDP_DOWN,
    },
)
async def device_verification(
    settings: Settings,
    config: ConfigDep,
    db: DeviceFlowDBDep,
    relying_party: RelyingPartyDep,
    user_code: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """The page ``dirac login`` sends the user to: a form for the code, then the VO's
    identity provider or the built-in accounts' login form."""
    if not user_code:
        return login_pages.code_form(_url(settings, DEVICE_PATH))
    found = await _pending_flow(db, config, user_code)
    if isinstance(found, str):
        return login_pages.code_form(
            _url(settings, DEVICE_PATH), found, status.HTTP_400_BAD_REQUEST
        )
    flow, vo_config = found
    provider = vo_config.identity_provider
    if provider is None:
        return login_pages.account_form(
            _url(settings, LOGIN_PATH),
            user_code=format_user_code(flow.user_code),
            vo=flow.vo,
            group=flow.group,
            client_id=flow.client_id,
        )
    code_verifier, code_challenge = pkce_pair()
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    try:
        location = await relying_party.authorization_url(
            provider,
            redirect_uri=_url(settings, CALLBACK_PATH),
            state=state,
            nonce=nonce,
            code_challenge=code_challenge,
        )
    except IdentityProviderError as exc:
        logger.warning("VO %s: identity provider unusable: %s", flow.vo, exc)
        return login_pages.message_page(
            "Identity provider unavailable",
            f"The identity provider of VO {flow.vo!r} cannot be used now ({exc}). "
            "Try again later, or tell the service's administrators.",
            status.HTTP_502_BAD_GATEWAY,
        )
    now = datetime.now(UTC)
    if not await db.start_idp_login(
        flow.device_code_hash, state=state, code_verifier=code_verifier, nonce=nonce, now=now
    ):
        return login_pages.code_form(  # it was approved, denied or expired meanwhile
            _url(settings, DEVICE_PATH),
            "This code is no longer waiting for a login. Start again with `dirac login`.",
            status.HTTP_400_BAD_REQUEST,
        )
    return RedirectResponse(location, status.HTTP_302_FOUND, headers=login_pages.SECURITY_HEADERS)


@router.post(
    "/device/login",
    response_class=HTMLResponse,
    responses={
        200: HTML,
        401: {"description": "Wrong username or password", **HTML},
        403: {"description": "The account may not log in to this VO or group", **HTML},
        **PAGE_RESPONSES,
    },
)
async def device_login(
    user_code: Annotated[str, Form(max_length=64)],
    settings: Settings,
    config: ConfigDep,
    db: DeviceFlowDBDep,
    username: Annotated[str, Form(max_length=255)] = "",
    password: Annotated[str, Form(max_length=1024)] = "",
    decision: Annotated[Literal["approve", "deny"], Form()] = "approve",
) -> Response:
    """The built-in accounts' login form: approve (or deny) the device's request."""
    found = await _pending_flow(db, config, user_code)
    if isinstance(found, str):
        return login_pages.code_form(
            _url(settings, DEVICE_PATH), found, status.HTTP_400_BAD_REQUEST
        )
    flow, vo_config = found
    now = datetime.now(UTC)
    if vo_config.identity_provider is not None:
        return login_pages.message_page(
            "Log in at your identity provider",
            f"VO {flow.vo!r} logs its users in at its identity provider, not with a password "
            "here: open the link `dirac login` printed.",
            status.HTTP_400_BAD_REQUEST,
        )
    if decision == "deny":
        await db.deny(flow.device_code_hash, now)
        return login_pages.message_page(
            "Login denied", "You denied the login: `dirac login` stops. You can close this page."
        )

    def form_again(message: str, status_code: int) -> HTMLResponse:
        return login_pages.account_form(
            _url(settings, LOGIN_PATH),
            user_code=format_user_code(flow.user_code),
            vo=flow.vo,
            group=flow.group,
            client_id=flow.client_id,
            message=message,
            status_code=status_code,
        )

    account = config.accounts.get(username)
    try:
        # argon2 takes tens of milliseconds of CPU: not on the event loop
        valid = await anyio.to_thread.run_sync(
            lambda: verify_password(password, account.password_hash if account else None)
        )
    except PasswordHashError:
        logger.error("account %r: its password hash in the configuration is not valid", username)
        return form_again(
            "This account cannot log in: its configuration is broken. Tell the administrators.",
            status.HTTP_403_FORBIDDEN,
        )
    if not valid:
        return form_again("Wrong username or password.", status.HTTP_401_UNAUTHORIZED)
    try:
        group = choose_group(flow.vo, vo_config, username, flow.group)
    except LoginRefusedError as exc:
        return form_again(f"Access refused: {exc}.", status.HTTP_403_FORBIDDEN)
    return await _approve(db, flow, vo_config, username, None, group, now)


async def _approve(
    db: DeviceFlowDB,
    flow: DeviceFlow,
    vo_config: VOConfig,
    subject: str,
    provider_name: str | None,
    group: str,
    now: datetime,
) -> HTMLResponse:
    name = display_name(vo_config, subject, provider_name)
    if not await db.approve(
        flow.device_code_hash, sub=subject, preferred_username=name, group=group, now=now
    ):
        problem = _problem(flow, now) or "This login is no longer waiting for approval."
        return login_pages.message_page("Login failed", problem, status.HTTP_400_BAD_REQUEST)
    return login_pages.message_page(
        "You are logged in",
        f"You are logged in as {name} in VO {flow.vo}, group {group}. "
        "Go back to your terminal: `dirac login` finishes by itself. You can close this page.",
    )


@router.get(
    "/device/callback",
    response_class=HTMLResponse,
    responses={
        200: HTML,
        403: {"description": "The user may not log in to this VO or group", **HTML},
        **PAGE_RESPONSES,
        **IDP_DOWN,
    },
)
async def device_callback(
    settings: Settings,
    config: ConfigDep,
    db: DeviceFlowDBDep,
    relying_party: RelyingPartyDep,
    code: Annotated[str | None, Query(max_length=4096)] = None,
    state: Annotated[str | None, Query(max_length=128)] = None,
    error: Annotated[str | None, Query(max_length=256)] = None,
    error_description: Annotated[str | None, Query(max_length=1024)] = None,
) -> Response:
    """Where the VO's identity provider sends the browser back (authorization response)."""
    bad = status.HTTP_400_BAD_REQUEST
    # states we send are url-safe base64: anything else (a NUL byte...) is no login of ours
    flow = await db.take_idp_login(state) if state and URLSAFE.fullmatch(state) else None
    if flow is None:
        return login_pages.message_page(
            "Login failed",
            "This answer of the identity provider belongs to no login in progress (it was "
            "already used, or it was not sent for this service). Open the link `dirac login` "
            "printed again.",
            bad,
        )
    now = datetime.now(UTC)
    problem = _problem(flow, now)
    vo_config = config.vos.get(flow.vo)
    provider = vo_config.identity_provider if vo_config else None
    if problem is None and (vo_config is None or provider is None):
        problem = f"VO {flow.vo!r} no longer logs in at an identity provider."
    if problem is not None:
        return login_pages.message_page("Login failed", problem, bad)
    assert vo_config is not None and provider is not None
    if error is not None:
        if error == "access_denied":
            await db.deny(flow.device_code_hash, now)
            return login_pages.message_page(
                "Login denied",
                "The identity provider says you declined: `dirac login` stops. "
                "You can close this page.",
            )
        details = f": {error_description}" if error_description else ""
        return login_pages.message_page(
            "Login failed",
            f"The identity provider answered {error}{details}. "
            "Open the link `dirac login` printed to try again.",
            bad,
        )
    if not code or flow.idp_code_verifier is None or flow.idp_nonce is None:
        return login_pages.message_page(
            "Login failed", "The identity provider's answer holds no authorization code.", bad
        )
    try:
        identity = await relying_party.redeem(
            provider,
            code=code,
            redirect_uri=_url(settings, CALLBACK_PATH),
            code_verifier=flow.idp_code_verifier,
            nonce=flow.idp_nonce,
        )
    except LoginFailedError as exc:
        logger.info("VO %s: a login at the identity provider failed: %s", flow.vo, exc)
        return login_pages.message_page(
            "Login failed",
            f"{exc}. Open the link `dirac login` printed to try again.",
            bad,
        )
    except IdentityProviderError as exc:
        logger.warning("VO %s: identity provider unusable: %s", flow.vo, exc)
        return login_pages.message_page(
            "Identity provider unavailable",
            f"The identity provider of VO {flow.vo!r} cannot be used now ({exc}).",
            status.HTTP_502_BAD_GATEWAY,
        )
    try:
        group = choose_group(flow.vo, vo_config, identity.sub, flow.group)
    except LoginRefusedError as exc:
        who = identity.preferred_username or identity.sub
        return login_pages.message_page(
            "Access refused",
            f"You logged in as {who} (subject {identity.sub}), but {exc}. Ask the VO's "
            "administrators to add you, or open the link `dirac login` printed again and "
            "log in as another user.",
            status.HTTP_403_FORBIDDEN,
        )
    return await _approve(
        db, flow, vo_config, identity.sub, identity.preferred_username, group, now
    )
