"""``/.well-known``: what a client needs to know before it logs in.

- ``dirac-metadata``: the server's version, the oldest client it accepts, its executors;
- ``openid-configuration``: the OAuth 2 authorization server's endpoints (RFC 8414);
- ``jwks.json``: the public keys that verify its access tokens (RFC 7517).
"""

from __future__ import annotations

from typing import Any

from fastapi import Response
from pydantic import BaseModel

from diracx.core.builders import builder_specs
from diracx.core.models import Metadata
from diracx.core.version import __version__
from diracx.routers.auth import PublicAccess
from diracx.routers.dependencies import ConfigDep, Settings
from diracx.routers.oauth import DEVICE_CODE_GRANT
from diracx.routers.routing import DiracxRouter
from diracx.routers.signing_keys import ALGORITHM
from diracx.routers.token_endpoint import CLIENT_CREDENTIALS_GRANT, REFRESH_TOKEN_GRANT
from diracx.routers.tokens import TokenServiceDep

router = DiracxRouter(
    policy=PublicAccess(), path_root="", prefix="/.well-known", tags=["well-known"]
)


@router.get("/dirac-metadata")
async def get_metadata(settings: Settings) -> Metadata:
    """The server's version, the oldest client it accepts and the executors it knows."""
    return Metadata(
        version=__version__,
        min_client_version=settings.min_client_version,
        executors=sorted(builder_specs()),
    )


class OpenIDConfiguration(BaseModel):
    """The authorization server's metadata (RFC 8414, OpenID Connect Discovery)."""

    issuer: str
    token_endpoint: str
    device_authorization_endpoint: str
    jwks_uri: str
    userinfo_endpoint: str
    revocation_endpoint: str
    grant_types_supported: list[str]
    scopes_supported: list[str]
    response_types_supported: list[str]
    token_endpoint_auth_methods_supported: list[str]
    revocation_endpoint_auth_methods_supported: list[str]
    subject_types_supported: list[str]
    id_token_signing_alg_values_supported: list[str]
    claims_supported: list[str]


class JWKSet(BaseModel):
    """RFC 7517 section 5: the public keys (OKP Ed25519: ``kty``, ``crv``, ``x``, ``kid``)."""

    keys: list[dict[str, Any]]


@router.get("/openid-configuration")
async def get_openid_configuration(settings: Settings, config: ConfigDep) -> OpenIDConfiguration:
    """Where to get, refresh, revoke and verify this service's tokens."""
    base = settings.public_url.rstrip("/")
    scopes = ["openid", "profile"]
    for vo_name, vo in sorted(config.vos.items()):
        scopes.append(f"vo:{vo_name}")
        for group_name, group in sorted(vo.groups.items()):
            scopes.append(f"group:{group_name}")
            scopes.extend(f"property:{p}" for p in group.properties)
    return OpenIDConfiguration(
        issuer=settings.public_url,
        token_endpoint=f"{base}/api/auth/token",
        device_authorization_endpoint=f"{base}/api/auth/device",
        jwks_uri=f"{base}/.well-known/jwks.json",
        userinfo_endpoint=f"{base}/api/auth/userinfo",
        revocation_endpoint=f"{base}/api/auth/revoke",
        grant_types_supported=[REFRESH_TOKEN_GRANT, CLIENT_CREDENTIALS_GRANT, DEVICE_CODE_GRANT],
        scopes_supported=list(dict.fromkeys(scopes)),
        response_types_supported=["none"],  # no authorization endpoint: grants only
        token_endpoint_auth_methods_supported=["none", "client_secret_basic", "client_secret_post"],
        revocation_endpoint_auth_methods_supported=["none"],
        subject_types_supported=["public"],
        id_token_signing_alg_values_supported=[ALGORITHM],
        claims_supported=[
            "iss",
            "aud",
            "sub",
            "preferred_username",
            "vo",
            "dirac_group",
            "dirac_properties",
            "fam",
            "jti",
            "iat",
            "exp",
            "scope",
        ],
    )


@router.get("/jwks.json")
async def get_jwks(response: Response, service: TokenServiceDep) -> JWKSet:
    """The public keys that verify this service's access tokens (a token names its ``kid``).

    Several keys are published after a rotation; fetch again on an unknown ``kid``.
    """
    response.headers["Cache-Control"] = "public, max-age=60"
    return JWKSet(keys=service.jwks()["keys"])
