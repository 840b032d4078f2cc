"""Real access tokens for tests, and a configuration with two VOs.

Tokens are minted by the app's own ``TokenService`` (the one its lifespan started), so
they are exactly what ``dirac login`` would get: signed JWTs, with a token family in the
database, verified by the app like any other. The app needs ``secret_key`` in its
settings (it seals the signing keys); :data:`TEST_SECRET_KEY` will do.

In a test with a started ``TestClient`` (``with TestClient(app) as client``)::

    from diracx.testing.auth import mint_token, bearer

    token = mint_token(client, sub="alice", vo="lhcb", group="lhcb_user")
    client.get("/api/jobs/1", headers=bearer(token))

From async code running in the app's event loop: ``await issue_test_token(app, sub=...,
vo=..., group=...)``. The ``mint_token`` fixture is ``mint_token`` bound to the test's
``client`` fixture: ``mint_token(sub="alice", vo="lhcb", group="lhcb_user")``.

:func:`two_vo_config` is a configuration with two VOs (``lhcb``, ``dteam``) and three
users (``alice`` and ``bob`` in lhcb, ``carol`` in dteam), and a service account per VO
(secrets in :data:`SERVICE_SECRETS`); :func:`write_config` writes one for
``settings.config``. :func:`sso_and_local_config` is a configuration for logins (one VO
at an OpenID Connect provider, one with built-in accounts), and
:func:`login_service_settings` the settings of a service that serves it.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml
from pydantic import SecretStr

from diracx.core.config import (
    NORMAL_USER,
    SERVICE_ADMIN,
    VO_ADMIN,
    Config,
    GroupConfig,
    ServiceAccountConfig,
    UserConfig,
    VOConfig,
)
from diracx.core.settings import ServiceSettings

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from diracx.routers.oauth import TokenResponse

# A valid Fernet key, for tests only (settings.secret_key / DIRACX_SECRET_KEY)
TEST_SECRET_KEY = "dGVzdC1vbmx5LXNlY3JldC1rZXktMzItYnl0ZXMhISE="
SERVICE_SECRETS = {"lhcb-robot": "lhcb-robot-secret", "dteam-robot": "dteam-robot-secret"}


def bearer(token: str) -> dict[str, str]:
    """The ``Authorization`` header that presents *token*."""
    return {"Authorization": f"Bearer {token}"}


async def issue_test_tokens(
    app: FastAPI,
    *,
    sub: str,
    vo: str,
    group: str,
    preferred_username: str | None = None,
    refresh: bool = True,
) -> TokenResponse:
    """A login for *sub* in *group* of *vo*: access and refresh tokens, as the token
    endpoint answers them (run it in the app's event loop: ``client.portal.call``)."""
    from diracx.routers.oauth import Identity

    service = app.state.token_service
    config = app.state.config_source.current()
    identity = Identity(
        sub=sub,
        preferred_username=preferred_username or sub,
        vo=vo,
        group=group,
        client_id="diracx-tests",
    )
    response: TokenResponse = await service.issue(identity, config, refresh=refresh)
    return response


async def issue_test_token(
    app: FastAPI, *, sub: str, vo: str, group: str, preferred_username: str | None = None
) -> str:
    """An access token of *app* for *sub* in *group* of *vo* (properties: the group's)."""
    tokens = await issue_test_tokens(
        app, sub=sub, vo=vo, group=group, preferred_username=preferred_username, refresh=False
    )
    return tokens.access_token


def mint_token(
    client: TestClient, *, sub: str, vo: str, group: str, preferred_username: str | None = None
) -> str:
    """:func:`issue_test_token` from a test: *client* is a started ``TestClient``."""
    if client.portal is None:
        raise RuntimeError("start the TestClient first: `with TestClient(app) as client:`")
    app: FastAPI = client.app  # type: ignore[assignment]
    call: Callable[..., Any] = partial(
        issue_test_token,
        app,
        sub=sub,
        vo=vo,
        group=group,
        preferred_username=preferred_username,
    )
    token: str = client.portal.call(call)
    return token


@pytest.fixture(name="mint_token")
def mint_token_fixture(request: pytest.FixtureRequest) -> Callable[..., str]:
    """``mint_token(sub=..., vo=..., group=...)`` on the app of the test's ``client``."""
    client: TestClient = request.getfixturevalue("client")
    return partial(mint_token, client)


def two_vo_config() -> Config:
    """Two VOs, three users, one service account per VO."""
    from diracx.core.passwords import hash_password

    return Config(
        vos={
            "lhcb": VOConfig(
                default_group="lhcb_user",
                groups={
                    "lhcb_user": GroupConfig(properties=[NORMAL_USER]),
                    "lhcb_admin": GroupConfig(properties=[NORMAL_USER, VO_ADMIN]),
                },
                users={
                    "alice": UserConfig(groups=["lhcb_user", "lhcb_admin"]),
                    "bob": UserConfig(groups=["lhcb_user"], preferred_username="Bob"),
                },
            ),
            "dteam": VOConfig(
                default_group="dteam_user",
                groups={
                    "dteam_user": GroupConfig(properties=[NORMAL_USER]),
                    "dteam_ops": GroupConfig(properties=[NORMAL_USER, VO_ADMIN, SERVICE_ADMIN]),
                },
                users={"carol": UserConfig(groups=["dteam_user", "dteam_ops"])},
            ),
        },
        service_accounts={
            "lhcb-robot": ServiceAccountConfig(
                secret_hash=hash_password(SERVICE_SECRETS["lhcb-robot"]),
                vo="lhcb",
                group="lhcb_user",
            ),
            "dteam-robot": ServiceAccountConfig(
                secret_hash=hash_password(SERVICE_SECRETS["dteam-robot"]),
                vo="dteam",
                group="dteam_user",
            ),
        },
    )


def write_config(path: Path, config: Config | None = None) -> str:
    """Write *config* (default: :func:`two_vo_config`) as YAML to *path*; returns the
    value for ``settings.config`` (``DIRACX_CONFIG``)."""
    document = (config or two_vo_config()).model_dump(mode="json", exclude_defaults=False)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def sso_and_local_config(
    issuer: str,
    *,
    client_id: str,
    client_secret: str,
    sso_users: dict[str, Any],
    local_users: dict[str, Any],
    password_hashes: dict[str, str],
) -> dict[str, Any]:
    """A configuration document with two VOs, each with groups ``users`` (NormalUser) and
    ``admins`` (VOAdmin): ``sso``, whose users log in at the OpenID Connect provider
    *issuer* (the service is its client *client_id*), and ``local``, whose users log in
    with built-in accounts (*password_hashes*: account name -> hash)."""
    groups = {"users": {"properties": [NORMAL_USER]}, "admins": {"properties": [VO_ADMIN]}}
    return {
        "vos": {
            "sso": {
                "identity_provider": {
                    "issuer": issuer,
                    "client_id": client_id,
                    "client_secret": client_secret,
                },
                "default_group": "users",
                "groups": groups,
                "users": sso_users,
            },
            "local": {"default_group": "users", "groups": groups, "users": local_users},
        },
        "accounts": {name: {"password_hash": h} for name, h in password_hashes.items()},
    }


def login_service_settings(
    root: Path, db_url: str, config: dict[str, Any], public_url: str, **fields: Any
) -> ServiceSettings:
    """Settings of a service that logs users in at *public_url*: *config* (a document)
    written to ``root/config.yaml``, a fresh secret key, its data under ``root/data``;
    *fields* set the rest."""
    from diracx.core.secrets import new_key

    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return ServiceSettings(
        data_dir=root / "data",
        db_url=db_url,
        config=str(path),
        public_url=public_url,
        secret_key=SecretStr(new_key()),
        **fields,
    )
