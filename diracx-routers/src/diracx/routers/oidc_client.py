"""DiracX as an OpenID Connect relying party: logging a user in at their VO's provider.

The authorization code flow with PKCE (RFC 7636): :meth:`RelyingParty.authorization_url`
sends the browser to the provider with ``state``, ``nonce`` and an S256 code challenge;
:meth:`RelyingParty.redeem` exchanges the code it sends back (with the code verifier,
and the client secret of a confidential client) and verifies the ID token: signature
against the provider's JWKS, ``iss``, ``aud``/``azp``, ``exp``, ``iat`` and ``nonce``.

Each provider's discovery document and keys are fetched with httpx and cached; the
keys are fetched again when a token names a key the cache does not hold (rotation).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode

import httpx
import jwt

from diracx.core.config import IdentityProviderConfig

logger = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
CACHE_SECONDS = 3600.0
HTTP_TIMEOUT = 10.0
CLOCK_LEEWAY = 60  # seconds of clock difference tolerated with the provider
# Asymmetric algorithms only: an HMAC-signed ID token would be keyed by the client secret
# (and "none" is no signature at all).
SIGNING_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)
KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}


class IdentityProviderError(Exception):
    """The provider cannot be reached, or answered something unusable (a 502 page)."""


class LoginFailedError(Exception):
    """The provider's answer does not log the user in: a refused code, a bad ID token."""


@dataclass(frozen=True)
class ProviderMetadata:
    """What DiracX uses of a provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    signing_algorithms: frozenset[str]
    # how the client secret is sent: client_secret_basic (the default) or client_secret_post
    secret_in_body: bool


@dataclass(frozen=True)
class ProviderIdentity:
    """Who the provider says logged in."""

    sub: str
    preferred_username: str | None


def pkce_pair() -> tuple[str, str]:
    """A PKCE code verifier and its S256 challenge (RFC 7636 section 4)."""
    verifier = secrets.token_urlsafe(48)  # 64 characters of [A-Za-z0-9_-]
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


def _issuer(provider: IdentityProviderConfig) -> str:
    # pydantic's AnyHttpUrl adds a trailing slash to a bare host; issuers are compared without
    return str(provider.issuer).rstrip("/")


def _metadata(issuer: str, document: Any) -> ProviderMetadata:
    if not isinstance(document, dict):
        raise IdentityProviderError(f"the discovery document of {issuer} is not a JSON object")
    stated = document.get("issuer")
    if not isinstance(stated, str) or stated.rstrip("/") != issuer:
        # OpenID Connect Discovery 1.0 section 4.3: the issuer must be the one asked
        raise IdentityProviderError(f"the discovery document of {issuer} names issuer {stated!r}")
    fields = {}
    for name in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
        value = document.get(name)
        if not isinstance(value, str) or not value.startswith(("https://", "http://")):
            raise IdentityProviderError(f"the discovery document of {issuer} lacks {name}")
        fields[name] = value
    advertised = document.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = SIGNING_ALGORITHMS & {a for a in advertised if isinstance(a, str)}
    if not algorithms:
        raise IdentityProviderError(
            f"{issuer} signs ID tokens with none of the algorithms DiracX accepts: {advertised}"
        )
    methods = document.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
    return ProviderMetadata(
        issuer=stated,
        signing_algorithms=frozenset(algorithms),
        secret_in_body="client_secret_basic" not in methods and "client_secret_post" in methods,
        **fields,
    )


class RelyingParty:
    """Logs users in at OpenID Connect providers; one per app (it holds the caches)."""

    def __init__(self, *, cache_seconds: float = CACHE_SECONDS) -> None:
        self.cache_seconds = cache_seconds
        self._metadata: dict[str, tuple[float, ProviderMetadata]] = {}
        self._keys: dict[str, tuple[float, list[jwt.PyJWK]]] = {}

    async def _get_json(self, url: str, what: str) -> Any:
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
                response = await client.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise IdentityProviderError(f"cannot fetch {what} from {url}: {exc}") from None
        if response.status_code != 200:
            raise IdentityProviderError(f"{url} answered {response.status_code} for {what}")
        try:
            return response.json()
        except ValueError:
            raise IdentityProviderError(f"{url} did not answer JSON for {what}") from None

    async def metadata(self, provider: IdentityProviderConfig) -> ProviderMetadata:
        """The provider's discovery document (cached)."""
        issuer = _issuer(provider)
        cached = self._metadata.get(issuer)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        document = await self._get_json(issuer + DISCOVERY_PATH, "the discovery document")
        metadata = _metadata(issuer, document)
        self._metadata[issuer] = (time.monotonic() + self.cache_seconds, metadata)
        return metadata

    async def _signing_keys(self, metadata: ProviderMetadata, *, refresh: bool) -> list[jwt.PyJWK]:
        cached = self._keys.get(metadata.jwks_uri)
        if not refresh and cached is not None and cached[0] > time.monotonic():
            return cached[1]
        document = await self._get_json(metadata.jwks_uri, "the signing keys")
        try:
            key_set = jwt.PyJWKSet.from_dict(document if isinstance(document, dict) else {})
        except jwt.PyJWTError as exc:
            raise IdentityProviderError(f"{metadata.jwks_uri} holds no usable key: {exc}") from None
        keys = [k for k in key_set if k.key_type != "oct" and k.public_key_use in (None, "sig")]
        self._keys[metadata.jwks_uri] = (time.monotonic() + self.cache_seconds, keys)
        return keys

    async def authorization_url(
        self,
        provider: IdentityProviderConfig,
        *,
        redirect_uri: str,
        state: str,
        nonce: str,
        code_challenge: str,
    ) -> str:
        """Where to send the browser to log in (OpenID Connect Core 3.1.2.1, RFC 7636)."""
        metadata = await self.metadata(provider)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": provider.client_id,
                "redirect_uri": redirect_uri,
                "scope": " ".join(dict.fromkeys(["openid", *provider.scopes])),
                "state": state,
                "nonce": nonce,
                "code_challenge": code_challenge,
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in metadata.authorization_endpoint else "?"
        return f"{metadata.authorization_endpoint}{separator}{query}"

    async def redeem(
        self,
        provider: IdentityProviderConfig,
        *,
        code: str,
        redirect_uri: str,
        code_verifier: str,
        nonce: str,
    ) -> ProviderIdentity:
        """Exchange an authorization code for an ID token, verify it, and say who it names."""
        metadata = await self.metadata(provider)
        id_token = await self._exchange(provider, metadata, code, redirect_uri, code_verifier)
        claims = await self._verify(provider, metadata, id_token, nonce)
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise LoginFailedError("the identity provider's ID token names no subject")
        username = claims.get("preferred_username")
        return ProviderIdentity(sub=sub, preferred_username=username or None)

    async def _exchange(
        self,
        provider: IdentityProviderConfig,
        metadata: ProviderMetadata,
        code: str,
        redirect_uri: str,
        code_verifier: str,
    ) -> str:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
            "client_id": provider.client_id,
        }
        auth: httpx.Auth | None = None
        if provider.client_secret is not None:
            if metadata.secret_in_body:
                form["client_secret"] = provider.client_secret
            else:  # RFC 6749 2.3.1: both parts form-encoded before Basic
                auth = httpx.BasicAuth(
                    quote_plus(provider.client_id), quote_plus(provider.client_secret)
                )
        try:
            async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as client:
                if auth is not None:
                    client.auth = auth
                response = await client.post(
                    metadata.token_endpoint, data=form, headers={"Accept": "application/json"}
                )
        except httpx.HTTPError as exc:
            raise IdentityProviderError(
                f"cannot reach the token endpoint {metadata.token_endpoint}: {exc}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise IdentityProviderError(
                f"{metadata.token_endpoint} answered {response.status_code} without JSON"
            )
        if response.status_code != 200:
            error = _short(body.get("error")) or f"HTTP {response.status_code}"
            description = _short(body.get("error_description"))
            if response.status_code >= 500:
                raise IdentityProviderError(f"the token endpoint failed: {error}")
            raise LoginFailedError(
                f"the identity provider refused the login: {error}"
                + (f" ({description})" if description else "")
            )
        id_token = body.get("id_token")
        if not isinstance(id_token, str):
            raise LoginFailedError("the identity provider's answer holds no ID token")
        return id_token

    async def _verify(
        self,
        provider: IdentityProviderConfig,
        metadata: ProviderMetadata,
        id_token: str,
        nonce: str,
    ) -> Mapping[str, Any]:
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise LoginFailedError("the ID token is not a JWT") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in metadata.signing_algorithms:
            raise LoginFailedError(f"the ID token is signed with {algorithm!r}, not accepted")
        key = self._choose_key(await self._signing_keys(metadata, refresh=False), algorithm, kid)
        if key is None:  # perhaps the provider rotated its keys since they were cached
            keys = await self._signing_keys(metadata, refresh=True)
            key = self._choose_key(keys, algorithm, kid)
        if key is None:
            raise LoginFailedError(f"the ID token's key {kid!r} is not among the provider's keys")
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key=key.key,
                algorithms=[algorithm],
                audience=provider.client_id,
                issuer=metadata.issuer,
                leeway=CLOCK_LEEWAY,
                options={"require": ["iss", "aud", "sub", "exp", "iat"]},
            )
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise LoginFailedError(f"the ID token is not valid: {exc}") from None
        audience = claims["aud"]
        # OpenID Connect Core 3.1.3.7: with several audiences, azp must be this client
        several = isinstance(audience, list) and len(audience) > 1
        if several and claims.get("azp") != provider.client_id:
            raise LoginFailedError("the ID token was issued to another client (azp)")
        token_nonce = claims.get("nonce")
        if not isinstance(token_nonce, str) or not secrets.compare_digest(token_nonce, nonce):
            raise LoginFailedError("the ID token's nonce is not the one of this login")
        return claims

    @staticmethod
    def _choose_key(keys: list[jwt.PyJWK], algorithm: str, kid: str | None) -> jwt.PyJWK | None:
        key_type = KEY_TYPES.get(algorithm[:2])
        fitting = [k for k in keys if k.key_type == key_type]
        if kid is not None:
            return next((k for k in fitting if k.key_id == kid), None)
        return fitting[0] if len(fitting) == 1 else None


def _short(value: object) -> str:
    """A provider's error text, made safe to show: a string, at most 200 characters."""
    return value[:200] if isinstance(value, str) else ""
