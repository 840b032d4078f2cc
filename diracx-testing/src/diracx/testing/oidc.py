"""A real, minimal OpenID Connect provider on loopback, for the login tests.

It speaks the protocol a VO's provider speaks to DiracX (OpenID Connect Core 1.0,
authorization code flow, with PKCE as RFC 7636 and OAuth 2.1 require):

- ``GET /.well-known/openid-configuration`` (discovery) and ``GET /jwks`` (its RS256
  key, made when the provider starts; :meth:`OIDCProvider.rotate_key` makes another);
- ``GET|POST /authorize``: checks the client and its exact redirect URI (else an error
  page, never a redirect), ``response_type=code``, the ``openid`` scope and an S256
  code challenge; authenticates the user — the one :meth:`OIDCProvider.login_as` put
  in "the browser's session", or the one named in its login form (users are a fixed
  list: no passwords) — stores the code with its challenge and nonce, and redirects
  back with ``code`` and ``state`` (or ``error=access_denied`` after
  :meth:`OIDCProvider.decline`, or the form's "Deny");
- ``POST /token``: authenticates the client (Basic or in the body, when it has a
  secret), redeems the code once, checks ``redirect_uri`` and the PKCE verifier, and
  answers an ID token (``iss``, ``sub``, ``aud``, ``azp``, ``exp``, ``iat``,
  ``nonce``, ``preferred_username``, ``email``) with an access token;
- ``GET /userinfo`` with that access token.

:meth:`OIDCProvider.tamper_id_tokens` makes it sign wrong claims (another audience, an
old ``exp``...) to test that a relying party refuses them.

Fixture ``oidc_provider`` (function): a started provider with the users alice, bob
and carol. This module imports nothing of diracx.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import parse_qsl, unquote_plus, urlencode

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from diracx.testing.loopback import LoopbackServer

DEFAULT_USERS = ("alice", "bob", "carol")
CODE_LIFETIME = 60.0  # seconds an authorization code may wait to be redeemed
TOKEN_LIFETIME = 300  # seconds an ID token or access token is valid
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass(frozen=True)
class RegisteredClient:
    client_id: str
    redirect_uris: frozenset[str]
    secret: str | None = None  # None: a public client (PKCE only)


@dataclass(frozen=True)
class _Grant:
    """An authorization code's promise, until it is redeemed (once)."""

    client_id: str
    redirect_uri: str
    username: str
    nonce: str | None
    code_challenge: str
    scope: str
    expires: float


@dataclass
class _State:
    clients: dict[str, RegisteredClient] = field(default_factory=dict)
    grants: dict[str, _Grant] = field(default_factory=dict)
    access_tokens: dict[str, tuple[str, float]] = field(default_factory=dict)
    session_user: str | None = None
    declining: bool = False
    tampered: dict[str, Any] = field(default_factory=dict)


def s256(verifier: str) -> str:
    """The S256 code challenge of a PKCE code verifier (RFC 7636 section 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _oauth_error(error: str, description: str, status_code: int = 400) -> JSONResponse:
    headers = dict(NO_STORE)
    if status_code == 401:
        headers["WWW-Authenticate"] = 'Basic realm="test-oidc"'
    return JSONResponse(
        {"error": error, "error_description": description},
        status_code=status_code,
        headers=headers,
    )


async def _params(request: Request) -> dict[str, str]:
    """The query parameters of a GET, the urlencoded form of a POST (last value wins)."""
    if request.method == "GET":
        return dict(request.query_params)
    body = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(body, keep_blank_values=True))


class OIDCProvider:
    """The provider: ``issuer`` once started; ``register_client``, ``login_as`` and
    ``decline`` set what it does; ``users`` maps usernames to their subjects."""

    def __init__(self, users: tuple[str, ...] = DEFAULT_USERS) -> None:
        self.users = {name: f"oidc-sub-{name}" for name in users}
        self._lock = threading.Lock()
        self._state = _State()
        self._server = LoopbackServer()
        self.issuer = self._server.url
        self._keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self.rotate_key()
        self.app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/jwks", self._jwks),
                Route("/authorize", self._authorize, methods=["GET", "POST"]),
                Route("/token", self._token, methods=["POST"]),
                Route("/userinfo", self._userinfo),
            ]
        )

    # -- what tests set ---------------------------------------------------------

    def subject(self, username: str) -> str:
        """The ``sub`` of *username*'s ID tokens."""
        return self.users[username]

    def register_client(
        self, client_id: str, redirect_uris: list[str] | str, secret: str | None = None
    ) -> RegisteredClient:
        uris = [redirect_uris] if isinstance(redirect_uris, str) else redirect_uris
        client = RegisteredClient(client_id, frozenset(uris), secret)
        with self._lock:
            self._state.clients[client_id] = client
        return client

    def login_as(self, username: str | None) -> None:
        """The user logged in at the provider in "the browser" (None: nobody, and the
        provider asks with its login form)."""
        if username is not None and username not in self.users:
            raise ValueError(f"{username!r} is not one of the provider's users {self.users}")
        with self._lock:
            self._state.session_user = username
            self._state.declining = False

    def decline(self) -> None:
        """The user refuses to authorize the client: ``error=access_denied``."""
        with self._lock:
            self._state.declining = True

    def tamper_id_tokens(self, **claims: Any) -> None:
        """Sign these claims into the next ID tokens instead of the right ones
        (``None`` removes a claim); no argument: right tokens again."""
        with self._lock:
            self._state.tampered = dict(claims)

    def rotate_key(self) -> str:
        """Sign with a new RS256 key from now on (the old one stays published)."""
        kid = secrets.token_hex(8)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with self._lock:
            self._keys.insert(0, (kid, key))
        return kid

    def unpublish_old_keys(self) -> None:
        """Publish only the current key (tokens signed with older ones stop verifying)."""
        with self._lock:
            del self._keys[1:]

    # -- lifecycle --------------------------------------------------------------

    def start(self) -> OIDCProvider:
        self._server.start(self.app)
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> OIDCProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- endpoints --------------------------------------------------------------

    async def _discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "userinfo_endpoint": f"{self.issuer}/userinfo",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": ["openid", "profile", "email"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                    "none",
                ],
                "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "email"],
            }
        )

    async def _jwks(self, request: Request) -> Response:
        with self._lock:
            keys = list(self._keys)
        published = []
        for kid, key in keys:
            jwk = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
            published.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return JSONResponse({"keys": published})

    async def _authorize(self, request: Request) -> Response:
        params = await _params(request)
        with self._lock:
            client = self._state.clients.get(params.get("client_id", ""))
            session_user, declining = self._state.session_user, self._state.declining
        redirect_uri = params.get("redirect_uri", "")
        # RFC 6749 4.1.2.1: a bad client or redirect URI is shown, never redirected to
        if client is None:
            return _page("Unknown client", f"No client {params.get('client_id')!r}.", 400)
        if redirect_uri not in client.redirect_uris:
            return _page("Bad redirect URI", f"{redirect_uri!r} is not registered.", 400)

        def back(**answer: str) -> Response:
            if params.get("state"):
                answer["state"] = params["state"]
            answer["iss"] = self.issuer  # RFC 9207
            separator = "&" if "?" in redirect_uri else "?"
            return RedirectResponse(f"{redirect_uri}{separator}{urlencode(answer)}", 302)

        if params.get("response_type") != "code":
            return back(error="unsupported_response_type", error_description="only code")
        if "openid" not in params.get("scope", "").split():
            return back(error="invalid_scope", error_description="the openid scope is required")
        challenge = params.get("code_challenge", "")
        if params.get("code_challenge_method") != "S256" or not 43 <= len(challenge) <= 128:
            return back(error="invalid_request", error_description="PKCE with S256 is required")
        if declining or params.get("decision") == "deny":
            return back(error="access_denied", error_description="the user declined")
        username = params.get("username") if request.method == "POST" else session_user
        if username is None:
            return _login_form(params)
        if username not in self.users:
            return _login_form(params, f"No user {username!r} here.", 401)
        code = secrets.token_urlsafe(32)
        grant = _Grant(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            username=username,
            nonce=params.get("nonce"),
            code_challenge=challenge,
            scope=params.get("scope", ""),
            expires=time.monotonic() + CODE_LIFETIME,
        )
        with self._lock:
            self._state.grants[code] = grant
        return back(code=code)

    def _authenticate_client(
        self, request: Request, form: Mapping[str, str]
    ) -> RegisteredClient | Response:
        client_id, secret = form.get("client_id"), form.get("client_secret")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(header[6:], validate=True).decode()
                basic_id, _, basic_secret = decoded.partition(":")
            except ValueError:
                return _oauth_error("invalid_client", "malformed Basic credentials", 401)
            client_id, secret = unquote_plus(basic_id), unquote_plus(basic_secret)
        with self._lock:
            client = self._state.clients.get(client_id or "")
        if client is None:
            return _oauth_error("invalid_client", f"unknown client {client_id!r}", 401)
        if client.secret is not None and not (
            secret is not None and secrets.compare_digest(secret, client.secret)
        ):
            return _oauth_error("invalid_client", "wrong or missing client secret", 401)
        return client

    async def _token(self, request: Request) -> Response:
        form = await _params(request)
        client = self._authenticate_client(request, form)
        if isinstance(client, Response):
            return client
        if form.get("grant_type") != "authorization_code":
            return _oauth_error("unsupported_grant_type", "only authorization_code")
        with self._lock:
            grant = self._state.grants.pop(form.get("code", ""), None)  # single use
        if grant is None or grant.expires < time.monotonic():
            return _oauth_error("invalid_grant", "unknown, expired or already used code")
        if grant.client_id != client.client_id:
            return _oauth_error("invalid_grant", "the code was issued to another client")
        if form.get("redirect_uri") != grant.redirect_uri:
            return _oauth_error("invalid_grant", "redirect_uri differs from the authorization's")
        verifier = form.get("code_verifier", "")
        if not secrets.compare_digest(s256(verifier), grant.code_challenge):
            return _oauth_error("invalid_grant", "PKCE verification failed (code_verifier)")
        access_token = secrets.token_urlsafe(32)
        with self._lock:
            self._state.access_tokens[access_token] = (
                grant.username,
                time.monotonic() + TOKEN_LIFETIME,
            )
        return JSONResponse(
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME,
                "scope": grant.scope,
                "id_token": self._id_token(grant),
            },
            headers=NO_STORE,
        )

    def _claims(self, username: str) -> dict[str, Any]:
        return {
            "sub": self.users[username],
            "preferred_username": username,
            "email": f"{username}@example.org",
        }

    def _id_token(self, grant: _Grant) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": grant.client_id,
            "azp": grant.client_id,
            "iat": now,
            "auth_time": now,
            "exp": now + TOKEN_LIFETIME,
            **self._claims(grant.username),
        }
        if grant.nonce is not None:
            claims["nonce"] = grant.nonce
        with self._lock:
            claims.update(self._state.tampered)
            kid, key = self._keys[0]
        claims = {name: value for name, value in claims.items() if value is not None}
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})

    async def _userinfo(self, request: Request) -> Response:
        header = request.headers.get("authorization", "")
        token = header[7:] if header.lower().startswith("bearer ") else ""
        with self._lock:
            found = self._state.access_tokens.get(token)
        if found is None or found[1] < time.monotonic():
            return Response(status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return JSONResponse(self._claims(found[0]))


def _page(title: str, text: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f"<!DOCTYPE html><title>{escape(title)}</title><h1>{escape(title)}</h1>"
        f"<p>{escape(text)}</p>",
        status_code=status_code,
    )


def _login_form(params: Mapping[str, str], message: str = "", status_code: int = 200) -> Response:
    """The provider's login page: a username (no password: a test provider)."""
    hidden = "".join(
        f'<input type=hidden name="{escape(k)}" value="{escape(v)}">'
        for k, v in params.items()
        if k not in ("username", "decision")
    )
    error = f"<p class=error>{escape(message)}</p>" if message else ""
    return HTMLResponse(
        "<!DOCTYPE html><title>Test OpenID provider</title><h1>Sign in</h1>"
        f'{error}<form method=post action="/authorize">{hidden}'
        "<label>Username <input name=username></label>"
        "<button type=submit name=decision value=approve>Sign in</button>"
        "<button type=submit name=decision value=deny>Deny</button></form>",
        status_code=status_code,
    )


@pytest.fixture
def oidc_provider() -> Iterator[OIDCProvider]:
    """A real OpenID Connect provider on 127.0.0.1 for this test (users alice, bob,
    carol; register the relying party with ``register_client``)."""
    with OIDCProvider() as provider:
        yield provider
