"""TokenService: DiracX's own tokens, issued, refreshed, verified and revoked.

Access tokens are JWTs signed with the newest signing key (``diracx.routers.signing_keys``)
and carry who the caller is::

    iss  settings.public_url         aud  "diracx"
    sub, preferred_username          vo, dirac_group, dirac_properties (list)
    fam  the token family (login)    jti, iat, exp
    scope "vo:<vo> group:<group> property:<p> ..."

Refresh tokens are opaque random strings (the database keeps their SHA-256), rotated on
every use; reusing a rotated one revokes its whole family (``diracx.db.auth``).

Verifying a token costs no database query: the service keeps the published keys and the
recently revoked families in memory, reloads the keys every ``KEY_RELOAD_INTERVAL``
seconds (at once, rate-limited, on an unknown ``kid``) and the revocations every
``REVOCATION_REFRESH_INTERVAL`` seconds; a revocation made by this process counts at once.
Tokens it has verified are remembered until they expire, so that a client's next requests
skip the signature check.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import jwt
from fastapi import Depends, HTTPException, Request
from pydantic import ValidationError

from diracx.core.config import Config
from diracx.core.secrets import SecretBox
from diracx.core.settings import ServiceSettings
from diracx.db.auth import AuthDB, Rotation, TokenFamily, token_hash
from diracx.routers.auth import AuthorizedUser, unauthorized
from diracx.routers.oauth import Identity, OAuthError, TokenResponse
from diracx.routers.signing_keys import (
    ALGORITHM,
    SigningKeyError,
    VerificationKey,
    new_signing_key,
    open_private_key,
    rotate_signing_key,
    verification_key,
)

logger = logging.getLogger(__name__)

AUDIENCE = "diracx"
KEY_RELOAD_INTERVAL = 30.0  # seconds: a rotation on one replica reaches the others
UNKNOWN_KID_RELOAD_INTERVAL = 5.0  # at most one reload per this many seconds for unknown kids
REVOCATION_REFRESH_INTERVAL = 2.0  # seconds: a logout on one replica reaches the others
PURGE_INTERVAL = 3600.0  # seconds between deletions of expired refresh tokens and families
LEEWAY = 10  # seconds of clock skew tolerated between replicas
REVOCATION_OVERLAP = timedelta(seconds=60)  # revocations committed late are still seen
VERIFIED_CACHE_SIZE = 10_000
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "jti", "fam", "vo", "dirac_group")


class MissingSecretKeyError(RuntimeError):
    """A multi-user service was started without DIRACX_SECRET_KEY."""


def looks_like_jwt(token: str) -> bool:
    """A JWS in compact form (the static service token is a single base64url word)."""
    return token.count(".") == 2


def scope_of(vo: str, group: str, properties: list[str]) -> str:
    return " ".join([f"vo:{vo}", f"group:{group}", *(f"property:{p}" for p in properties)])


def _now() -> datetime:
    return datetime.now(UTC)


def membership_problem(config: Config, sub: str, vo: str, group: str) -> str | None:
    """Why *sub* may not act in *group* of *vo* under *config* (None: it may)."""
    vo_config = config.vos.get(vo)
    if vo_config is None:
        return f"the VO {vo!r} is not in the configuration"
    if group not in vo_config.groups:
        return f"the VO {vo!r} has no group {group!r}"
    account = config.service_accounts.get(sub)
    if account is not None and account.vo == vo and account.group == group:
        return None
    user = vo_config.users.get(sub)
    if user is None:
        return f"{sub!r} is not a member of the VO {vo!r}"
    if group not in user.groups:
        return f"{sub!r} is not in the group {group!r} of the VO {vo!r}"
    return None


class TokenService:
    """Issues and verifies the access and refresh tokens of one service process."""

    def __init__(
        self,
        db: AuthDB,
        settings: ServiceSettings,
        *,
        clock: Callable[[], float] = time.time,
        key_reload_interval: float = KEY_RELOAD_INTERVAL,
        revocation_refresh_interval: float = REVOCATION_REFRESH_INTERVAL,
    ) -> None:
        self.db = db
        self.settings = settings
        self.issuer = settings.public_url
        self.clock = clock
        self.key_reload_interval = key_reload_interval
        self.revocation_refresh_interval = revocation_refresh_interval
        secret = settings.secret_key
        self._box = SecretBox(secret.get_secret_value()) if secret is not None else None
        self._keys: dict[str, VerificationKey] = {}
        self._signing: tuple[str, Any] | None = None  # (kid, private key)
        self._keys_loaded = 0.0  # monotonic time of the last load
        self._key_lock = asyncio.Lock()
        self._revoked: dict[str, datetime] = {}  # family id -> when
        self._revocations_checked: datetime | None = None
        self._verified: dict[str, tuple[AuthorizedUser, float]] = {}  # token -> (user, exp)
        self._task: asyncio.Task[None] | None = None
        self._purged = 0.0

    # -- lifecycle -------------------------------------------------------------------

    async def start(self, *, background: bool = True) -> None:
        """Load the keys (making the first one if there is none) and the revocations;
        then keep both fresh in the background."""
        await self.reload_keys()
        if self._box is not None and self._signing is None:
            # Race-safe between replicas: each may add one, all then sign with the newest.
            await self.db.add_signing_key(new_signing_key(self._box, _now()))
            await self.reload_keys()
        await self.refresh_revocations()
        if background:
            self._task = asyncio.create_task(self._refresh_loop(), name="diracx-token-refresh")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.revocation_refresh_interval)
            try:
                await self.refresh_revocations()
                if time.monotonic() - self._keys_loaded >= self.key_reload_interval:
                    await self.reload_keys()
                if time.monotonic() - self._purged >= PURGE_INTERVAL:
                    await self.purge()
            except Exception:  # the database may be away for a while: try again later
                logger.warning("cannot refresh the token keys and revocations", exc_info=True)

    async def reload_keys(self, *, unless_newer_than: float = 0.0) -> None:
        """Read the published keys; sign with the newest (whose private key we can open).

        Skipped if the keys were read less than *unless_newer_than* seconds ago (a burst
        of requests with an unknown kid makes one reload, not one each).
        """
        async with self._key_lock:
            if time.monotonic() - self._keys_loaded < unless_newer_than:
                return
            records = await self.db.signing_keys()
            keys = {k.kid: k for r in records if (k := verification_key(r)) is not None}
            signing = self._signing
            if self._box is not None and records:
                newest = records[-1]
                if signing is None or signing[0] != newest.kid:
                    try:
                        signing = (newest.kid, open_private_key(newest, self._box))
                    except SigningKeyError:
                        if signing is None:
                            raise
                        logger.error("keeping the previous signing key", exc_info=True)
            if signing is not None and signing[0] not in keys:
                signing = None  # retired meanwhile (a rotation elsewhere): sign no more with it
            self._keys, self._signing = keys, signing
            self._keys_loaded = time.monotonic()

    async def refresh_revocations(self) -> None:
        """Learn the families revoked since the last check (by any replica)."""
        now = _now()
        horizon = now - timedelta(seconds=self.settings.access_token_lifetime) - REVOCATION_OVERLAP
        since = horizon if self._revocations_checked is None else self._revocations_checked
        for family_id, when in await self.db.revoked_since(since - REVOCATION_OVERLAP):
            self._revoked.setdefault(family_id, when)
        self._revocations_checked = now
        # a family revoked longer ago than a token lives has no live token left
        self._revoked = {f: w for f, w in self._revoked.items() if w >= horizon}

    async def purge(self) -> int:
        now = _now()
        self._purged = time.monotonic()
        lifetime = timedelta(seconds=self.settings.access_token_lifetime)
        return await self.db.purge(now - timedelta(days=1), now - lifetime - REVOCATION_OVERLAP)

    # -- keys ------------------------------------------------------------------------

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The published keys as a JWK set (oldest first)."""
        keys = sorted(self._keys.values(), key=lambda k: (k.created, k.kid))
        return {"keys": [k.jwk for k in keys]}

    async def rotate_key(self) -> str:
        """Add a signing key and sign with it from now on (``dirac auth rotate-key``
        does the same from the command line); retire the keys no live token uses."""
        if self._box is None:
            raise SigningKeyError("no DIRACX_SECRET_KEY: this service cannot make signing keys")
        record, _ = await rotate_signing_key(
            self.db, self._box, _now(), self.settings.access_token_lifetime
        )
        await self.reload_keys()
        return record.kid

    # -- issuing ---------------------------------------------------------------------

    def _signing_key(self) -> tuple[str, Any]:
        if self._signing is None:
            raise OAuthError(
                "unsupported_grant_type",
                "this service issues no tokens: it was started without DIRACX_SECRET_KEY",
            )
        return self._signing

    def encode(self, claims: dict[str, Any]) -> str:
        """Sign *claims* with the current key (tests use it to craft odd tokens)."""
        kid, key = self._signing_key()
        return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})

    def _access_token(self, family: TokenFamily, properties: list[str]) -> tuple[str, int, str]:
        now = int(self.clock())
        lifetime = self.settings.access_token_lifetime
        scope = scope_of(family.vo, family.group, properties)
        claims = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": family.sub,
            "preferred_username": family.preferred_username,
            "vo": family.vo,
            "dirac_group": family.group,
            "dirac_properties": properties,
            "fam": family.id,
            "jti": uuid.uuid4().hex,
            "iat": now,
            "exp": now + lifetime,
            "scope": scope,
            "client_id": family.client_id,
        }
        return self.encode(claims), lifetime, scope

    async def issue(
        self, identity: Identity, config: Config, *, refresh: bool = True
    ) -> TokenResponse:
        """A new login for *identity*: a token family, an access token and (unless
        *refresh* is False, as for client credentials) a refresh token."""
        vo_config = config.vos.get(identity.vo)
        if vo_config is None or identity.group not in vo_config.groups:
            raise OAuthError(
                "invalid_grant",
                f"the VO {identity.vo!r} has no group {identity.group!r} in the configuration",
            )
        self._signing_key()  # refuse before storing anything
        now = _now()
        family = TokenFamily(
            id=secrets.token_urlsafe(24),
            sub=identity.sub,
            preferred_username=identity.preferred_username,
            vo=identity.vo,
            group=identity.group,
            client_id=identity.client_id,
            created=now,
        )
        refresh_token = secrets.token_urlsafe(32) if refresh else None
        expires = now + timedelta(seconds=self.settings.refresh_token_lifetime)
        await self.db.create_family(
            family,
            token_hash(refresh_token) if refresh_token else None,
            expires if refresh_token else None,
        )
        properties = config.properties(identity.vo, identity.group)
        access, lifetime, scope = self._access_token(family, properties)
        return TokenResponse(
            access_token=access, expires_in=lifetime, refresh_token=refresh_token, scope=scope
        )

    async def refresh(self, refresh_token: str, config: Config) -> TokenResponse:
        """The refresh token grant: rotate *refresh_token*, issue a new access token.

        The properties come from the configuration in force now, so a change of a group's
        properties reaches its users at their next refresh.
        """
        self._signing_key()
        now = _now()
        successor = secrets.token_urlsafe(32)
        expires = now + timedelta(seconds=self.settings.refresh_token_lifetime)
        outcome, family = await self.db.rotate_refresh_token(
            token_hash(refresh_token), token_hash(successor), now, expires
        )
        if outcome is Rotation.UNKNOWN:
            raise OAuthError("invalid_grant", "unknown refresh token: log in again (dirac login)")
        assert family is not None
        if outcome is Rotation.REUSED:
            self._revoked[family.id] = now
            raise OAuthError(
                "invalid_grant",
                "this refresh token was used before: for safety, every token of this login "
                "is now revoked; log in again (dirac login)",
            )
        if outcome is Rotation.REVOKED:
            raise OAuthError(
                "invalid_grant",
                f"this login was revoked ({family.revoked_reason or 'logout'}): "
                "log in again (dirac login)",
            )
        if outcome is Rotation.EXPIRED:
            raise OAuthError(
                "invalid_grant", "the refresh token has expired: log in again (dirac login)"
            )
        problem = membership_problem(config, family.sub, family.vo, family.group)
        if problem is not None:
            await self.revoke_family(family.id, f"no longer allowed: {problem}")
            raise OAuthError("invalid_grant", f"{problem}: the login is revoked")
        properties = config.properties(family.vo, family.group)
        access, lifetime, scope = self._access_token(family, properties)
        return TokenResponse(
            access_token=access, expires_in=lifetime, refresh_token=successor, scope=scope
        )

    # -- revocation ------------------------------------------------------------------

    async def revoke_family(self, family_id: str, reason: str) -> None:
        now = _now()
        await self.db.revoke_family(family_id, reason, now)
        self._revoked.setdefault(family_id, now)

    async def revoke(self, token: str) -> bool:
        """RFC 7009: revoke the family of a refresh or access token of ours. Unknown
        tokens are ignored (False)."""
        family_id: str | None
        if looks_like_jwt(token):
            try:
                family_id = self._decode(token, verify_exp=False).get("fam")
            except HTTPException:
                return False
        else:
            family_id = await self.db.family_of_refresh_token(token_hash(token))
        if not isinstance(family_id, str):
            return False
        await self.revoke_family(family_id, "revoked by its owner (logout)")
        return True

    def is_revoked(self, family_id: str) -> bool:
        return family_id in self._revoked

    # -- verification ----------------------------------------------------------------

    async def verify(self, token: str) -> AuthorizedUser:
        """The user an access token stands for; 401 with the reason if it is refused."""
        cached = self._verified.get(token)
        if cached is not None:
            user, exp = cached
            if exp + LEEWAY <= self.clock():
                del self._verified[token]
                raise unauthorized(
                    "the access token has expired: refresh it, or log in again (dirac login)"
                )
        else:
            header = self._header(token)
            await self._ensure_key_of(header)
            claims = self._decode(token, header)
            try:
                user = AuthorizedUser(
                    sub=claims["sub"],
                    preferred_username=str(claims.get("preferred_username") or claims["sub"]),
                    vo=claims["vo"],
                    group=claims["dirac_group"],
                    properties=claims.get("dirac_properties") or [],
                    family_id=claims["fam"],
                )
            except ValidationError:
                raise unauthorized("invalid access token: malformed claims") from None
            if len(self._verified) >= VERIFIED_CACHE_SIZE:
                self._verified.pop(next(iter(self._verified)))  # the oldest
            self._verified[token] = (user, float(claims["exp"]))
        if user.family_id in self._revoked:
            raise unauthorized(
                "the access token was revoked (logout, or a reused refresh token): "
                "log in again (dirac login)"
            )
        return user

    @staticmethod
    def _header(token: str) -> dict[str, Any]:
        """The JOSE header of a compact JWS, unverified (what names the key and algorithm)."""
        segment = token.partition(".")[0]
        try:
            header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
        except (ValueError, binascii.Error):
            raise unauthorized("malformed access token: its header is not base64url JSON") from None
        if not isinstance(header, dict):
            raise unauthorized("malformed access token: its header is not a JSON object")
        return header

    async def _ensure_key_of(self, header: dict[str, Any]) -> None:
        """Reload the keys when *header* names a kid we do not know (a new key made by
        another replica), at most once every few seconds."""
        kid = header.get("kid")
        if not isinstance(kid, str) or kid in self._keys:
            return
        await self.reload_keys(unless_newer_than=UNKNOWN_KID_RELOAD_INTERVAL)

    def _decode(
        self, token: str, header: dict[str, Any] | None = None, *, verify_exp: bool = True
    ) -> dict[str, Any]:
        if header is None:
            header = self._header(token)
        alg = header.get("alg")
        if alg != ALGORITHM:
            if str(alg).lower() == "none":
                raise unauthorized("unsigned access tokens (alg 'none') are refused")
            raise unauthorized(
                f"the access token is signed with {alg!r}: this service accepts {ALGORITHM} only"
            )
        kid = header.get("kid")
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise unauthorized(
                f"the access token was signed by an unknown key ({kid!r}): log in again "
                "(dirac login)"
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key.public_key,
                algorithms=[key.algorithm],
                audience=AUDIENCE,
                issuer=self.issuer,
                leeway=LEEWAY,
                options={"require": list(REQUIRED_CLAIMS), "verify_exp": verify_exp},
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized(
                "the access token has expired: refresh it, or log in again (dirac login)"
            ) from None
        except jwt.InvalidAudienceError:
            raise unauthorized(
                f"the access token is not meant for this service (its audience is not {AUDIENCE!r})"
            ) from None
        except jwt.InvalidIssuerError:
            raise unauthorized(
                f"the access token was not issued by this service (issuer {self.issuer})"
            ) from None
        except jwt.InvalidSignatureError:
            raise unauthorized("the access token's signature is not valid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthorized(f"the access token lacks the claim {exc.claim!r}") from None
        except jwt.PyJWTError as exc:
            raise unauthorized(f"invalid access token: {exc}") from None
        for name in ("sub", "vo", "dirac_group", "fam"):
            if not isinstance(claims.get(name), str):
                raise unauthorized(f"invalid access token: the claim {name!r} is not a string")
        if not isinstance(claims.get("dirac_properties", []), list):
            raise unauthorized("invalid access token: 'dirac_properties' is not a list")
        return claims


async def start_token_service(settings: ServiceSettings, db: AuthDB) -> TokenService:
    """The service's TokenService, started. A deployment with a configuration (several
    users) must have DIRACX_SECRET_KEY: it seals the keys that sign their tokens."""
    if settings.secret_key is None and settings.config is not None:
        raise MissingSecretKeyError(
            "DIRACX_SECRET_KEY is not set: a service with a configuration of users "
            "(DIRACX_CONFIG) issues tokens, and seals their signing keys with it. Set it, the "
            "same on every replica and worker (make one with: python -c 'from "
            "diracx.core.secrets import new_key; print(new_key())')"
        )
    service = TokenService(db, settings)
    await service.start()
    return service


def get_token_service(request: Request) -> TokenService:
    service: TokenService = request.app.state.token_service
    return service


TokenServiceDep = Annotated[TokenService, Depends(get_token_service)]
