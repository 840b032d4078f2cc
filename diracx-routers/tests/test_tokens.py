"""DiracX's own tokens: issued, verified, refreshed, revoked and their keys rotated.

The app runs for real (lifespan, migrated SQLite and PostgreSQL database) with a
configuration of two VOs (``diracx.testing.auth.two_vo_config``).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient

from diracx.core.config import NORMAL_USER, VO_ADMIN, Config
from diracx.core.settings import ServiceSettings
from diracx.db.auth import SigningKeyRecord
from diracx.routers import create_app
from diracx.routers.oauth import DEVICE_CODE_GRANT, TokenResponse
from diracx.routers.queue import RecordingJobQueue
from diracx.routers.signing_keys import RETIRE_MARGIN, keys_to_retire
from diracx.routers.tokens import MissingSecretKeyError, TokenService
from diracx.testing.auth import (
    SERVICE_SECRETS,
    bearer,
    issue_test_tokens,
    mint_token,
    two_vo_config,
)

from .conftest import AUTH

PUBLIC_URL = "https://diracx.example.org"


@pytest.fixture
def app_config() -> Config:
    """A multi-user service: two VOs (the conftest adds a secret key)."""
    return two_vo_config()


@pytest.fixture
def settings(settings: ServiceSettings) -> ServiceSettings:
    return settings.model_copy(update={"public_url": PUBLIC_URL})


@pytest.fixture
def service(client: TestClient) -> TokenService:
    svc: TokenService = client.app.state.token_service  # type: ignore[attr-defined]
    return svc


def login(
    client: TestClient, sub: str = "alice", vo: str = "lhcb", group: str = "lhcb_user"
) -> TokenResponse:
    """Access and refresh tokens of a new login, as the device flow would end."""
    app: FastAPI = client.app  # type: ignore[assignment]
    assert client.portal is not None
    tokens: TokenResponse = client.portal.call(
        lambda: issue_test_tokens(app, sub=sub, vo=vo, group=group)
    )
    return tokens


def refresh(anonymous: TestClient, refresh_token: str | None) -> Any:
    return anonymous.post(
        "/api/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh_token}
    )


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def header_of(token: str) -> dict[str, Any]:
    return jwt.get_unverified_header(token)


def good_claims(service: TokenService, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": PUBLIC_URL,
        "aud": "diracx",
        "sub": "alice",
        "preferred_username": "alice",
        "vo": "lhcb",
        "dirac_group": "lhcb_user",
        "dirac_properties": [NORMAL_USER],
        "fam": "no-such-family",
        "jti": "x",
        "iat": now,
        "exp": now + 600,
        "scope": "vo:lhcb group:lhcb_user property:NormalUser",
    }
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def refused(anonymous: TestClient, token: str) -> str:
    r = anonymous.get("/api/auth/userinfo", headers=bearer(token))
    assert r.status_code == 401, r.text
    assert r.headers["www-authenticate"] == "Bearer"
    detail: str = r.json()["detail"]
    return detail


# -- issuing and verifying --------------------------------------------------------------


def test_a_minted_token_says_who_and_what(client: TestClient, anonymous: TestClient) -> None:
    token = mint_token(client, sub="alice", vo="lhcb", group="lhcb_admin")
    claims = claims_of(token)
    assert claims["iss"] == PUBLIC_URL and claims["aud"] == "diracx"
    assert claims["sub"] == "alice" and claims["vo"] == "lhcb"
    assert claims["dirac_group"] == "lhcb_admin"
    assert claims["dirac_properties"] == sorted([NORMAL_USER, VO_ADMIN])
    assert claims["scope"] == "vo:lhcb group:lhcb_admin property:NormalUser property:VOAdmin"
    assert claims["exp"] - claims["iat"] == 1200 and claims["fam"] and claims["jti"]
    assert header_of(token)["alg"] == "EdDSA"
    r = anonymous.get("/api/auth/userinfo", headers=bearer(token))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "sub": "alice",
        "preferred_username": "alice",
        "vo": "lhcb",
        "group": "lhcb_admin",
        "properties": ["NormalUser", "VOAdmin"],
    }


def test_the_static_service_token_is_the_local_user(client: TestClient) -> None:
    r = client.get("/api/auth/userinfo")  # the conftest's client presents the static token
    assert r.status_code == 200 and r.json()["sub"] == "local" and r.json()["vo"] == "local"


def test_expired_token(client: TestClient, anonymous: TestClient, service: TokenService) -> None:
    past = int(time.time()) - 3600
    token = service.encode(good_claims(service, iat=past - 600, exp=past))
    assert "expired" in refused(anonymous, token)
    # a token verified (and remembered) while valid is refused once it expires too
    fresh = mint_token(client, sub="bob", vo="lhcb", group="lhcb_user")
    assert anonymous.get("/api/auth/userinfo", headers=bearer(fresh)).status_code == 200
    service.clock = lambda: time.time() + 3600
    assert "expired" in refused(anonymous, fresh)


def test_wrongly_signed_token(anonymous: TestClient, service: TokenService) -> None:
    kid = service.jwks()["keys"][0]["kid"]
    forged = jwt.encode(
        good_claims(service), Ed25519PrivateKey.generate(), algorithm="EdDSA", headers={"kid": kid}
    )
    assert refused(anonymous, forged) == "the access token's signature is not valid"
    # a valid token with its payload changed
    genuine = service.encode(good_claims(service))
    head, _, sig = genuine.split(".")
    tampered = f"{head}.{b64(good_claims(service, vo='dteam'))}.{sig}"
    assert refused(anonymous, tampered) == "the access token's signature is not valid"


def test_alg_none_and_other_algorithms(anonymous: TestClient, service: TokenService) -> None:
    kid = service.jwks()["keys"][0]["kid"]
    unsigned = f"{b64({'alg': 'none', 'kid': kid, 'typ': 'JWT'})}.{b64(good_claims(service))}."
    assert "alg 'none'" in refused(anonymous, unsigned)
    # HS256 keyed with our public key (the classic algorithm confusion)
    public_x = service.jwks()["keys"][0]["x"]
    confused = jwt.encode(
        good_claims(service), public_x.encode() * 2, algorithm="HS256", headers={"kid": kid}
    )
    assert "accepts EdDSA only" in refused(anonymous, confused)


def test_wrong_audience_issuer_and_unknown_key(
    anonymous: TestClient, service: TokenService
) -> None:
    assert "not meant for this service" in refused(
        anonymous, service.encode(good_claims(service, aud="another-service"))
    )
    assert "not issued by this service" in refused(
        anonymous, service.encode(good_claims(service, iss="https://evil.example.org"))
    )
    assert "lacks the claim 'fam'" in refused(
        anonymous, service.encode(good_claims(service, fam=None))
    )
    stranger = jwt.encode(
        good_claims(service),
        Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": "not-ours"},
    )
    assert "unknown key ('not-ours')" in refused(anonymous, stranger)
    assert "malformed access token" in refused(anonymous, "a.b.c")


# -- refresh, reuse, logout ----------------------------------------------------------------


def test_refresh_rotates_and_reuse_revokes_the_family(
    client: TestClient, anonymous: TestClient
) -> None:
    first = login(client)
    r = refresh(anonymous, first.refresh_token)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    second = r.json()
    assert second["token_type"] == "Bearer" and second["expires_in"] == 1200
    assert second["refresh_token"] != first.refresh_token
    assert claims_of(second["access_token"])["fam"] == claims_of(first.access_token)["fam"]
    assert anonymous.get("/api/auth/userinfo", headers=bearer(second["access_token"])).is_success

    # the first refresh token again: it leaked, so the whole login is revoked
    r = refresh(anonymous, first.refresh_token)
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"
    assert "used before" in r.json()["error_description"]
    for access in (first.access_token, second["access_token"]):
        assert "revoked" in refused(anonymous, access)
    r = refresh(anonymous, second["refresh_token"])  # the live one dies with it
    assert r.status_code == 400 and "revoked" in r.json()["error_description"]


def test_logout_revokes_refresh_and_access_tokens(
    client: TestClient, anonymous: TestClient
) -> None:
    tokens = login(client, sub="carol", vo="dteam", group="dteam_user")
    other = login(client, sub="carol", vo="dteam", group="dteam_user")  # another login
    r = anonymous.post("/api/auth/revoke", data={"token": tokens.refresh_token})
    assert r.status_code == 200
    assert "revoked" in refused(anonymous, tokens.access_token)
    assert refresh(anonymous, tokens.refresh_token).json()["error"] == "invalid_grant"
    assert anonymous.get("/api/auth/userinfo", headers=bearer(other.access_token)).is_success
    # revoking by the access token works too; unknown tokens are answered 200 (RFC 7009)
    assert anonymous.post("/api/auth/revoke", data={"token": other.access_token}).is_success
    assert "revoked" in refused(anonymous, other.access_token)
    assert anonymous.post("/api/auth/revoke", data={"token": "never-issued"}).status_code == 200
    assert anonymous.post("/api/auth/revoke", data={}).json()["error"] == "invalid_request"


def test_unknown_refresh_token_and_bad_requests(anonymous: TestClient) -> None:
    r = refresh(anonymous, "never-issued")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert refresh(anonymous, None).json() == {
        "error": "invalid_request",
        "error_description": "refresh_token is required",
    }
    r = anonymous.post("/api/auth/token", data={})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = anonymous.post("/api/auth/token", data={"grant_type": "password"})
    assert r.status_code == 400 and r.json()["error"] == "unsupported_grant_type"
    r = anonymous.post("/api/auth/token", json={"grant_type": "refresh_token"})  # not a form
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"
    r = anonymous.post("/api/auth/token", data={"grant_type": DEVICE_CODE_GRANT})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


# -- client credentials ------------------------------------------------------------------


def test_client_credentials(anonymous: TestClient) -> None:
    secret = SERVICE_SECRETS["lhcb-robot"]
    basic = base64.b64encode(f"lhcb-robot:{secret}".encode()).decode()
    for kwargs in (
        {
            "data": {"grant_type": "client_credentials"},
            "headers": {"Authorization": f"Basic {basic}"},
        },
        {
            "data": {
                "grant_type": "client_credentials",
                "client_id": "lhcb-robot",
                "client_secret": secret,
            }
        },
    ):
        r = anonymous.post("/api/auth/token", **kwargs)
        assert r.status_code == 200, r.text
        body = r.json()
        assert "refresh_token" not in body  # an access token only
        assert body["scope"] == "vo:lhcb group:lhcb_user property:NormalUser"
        who = anonymous.get("/api/auth/userinfo", headers=bearer(body["access_token"])).json()
        assert (who["sub"], who["vo"], who["group"]) == ("lhcb-robot", "lhcb", "lhcb_user")


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [("lhcb-robot", "wrong"), ("dteam-robot", SERVICE_SECRETS["lhcb-robot"]), ("nobody", "x")],
)
def test_client_credentials_refused(anonymous: TestClient, client_id: str, secret: str) -> None:
    r = anonymous.post(
        "/api/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    assert r.status_code == 401
    assert r.json() == {
        "error": "invalid_client",
        "error_description": "unknown client, or wrong client secret",
    }


# -- keys ----------------------------------------------------------------------------------


def test_key_rotation_keeps_old_tokens_valid(
    client: TestClient, anonymous: TestClient, service: TokenService
) -> None:
    old_token = mint_token(client, sub="bob", vo="lhcb", group="lhcb_user")
    old_kid = header_of(old_token)["kid"]
    assert client.portal is not None
    new_kid = client.portal.call(service.rotate_key)
    assert new_kid != old_kid
    new_token = mint_token(client, sub="bob", vo="lhcb", group="lhcb_user")
    assert header_of(new_token)["kid"] == new_kid
    for token in (old_token, new_token):
        assert anonymous.get("/api/auth/userinfo", headers=bearer(token)).is_success
    jwks = anonymous.get("/.well-known/jwks.json").json()
    assert [k["kid"] for k in jwks["keys"]] == [old_kid, new_kid]


def test_a_rotation_on_another_replica_reaches_this_one(
    client: TestClient, anonymous: TestClient, service: TokenService
) -> None:
    """A second TokenService on the same database stands for another replica."""
    assert client.portal is not None
    other = TokenService(service.db, service.settings)
    client.portal.call(lambda: other.start(background=False))
    assert other.jwks() == service.jwks()
    new_kid = client.portal.call(other.rotate_key)
    from_other = client.portal.call(
        lambda: other.issue(login_identity("carol", "dteam", "dteam_user"), current_config(client))
    )
    assert header_of(from_other.access_token)["kid"] == new_kid
    # this replica does not know the key yet: it reloads on the unknown kid
    service._keys_loaded -= 60  # past the rate limit of such reloads
    r = anonymous.get("/api/auth/userinfo", headers=bearer(from_other.access_token))
    assert r.status_code == 200, r.text
    assert new_kid in {k["kid"] for k in service.jwks()["keys"]}
    # a logout on the other replica reaches this one at its next revocation refresh
    client.portal.call(lambda: other.revoke(from_other.access_token))
    client.portal.call(service.refresh_revocations)
    assert "revoked" in refused(anonymous, from_other.access_token)


def login_identity(sub: str, vo: str, group: str) -> Any:
    from diracx.routers.oauth import Identity

    return Identity(sub=sub, preferred_username=sub, vo=vo, group=group, client_id="tests")


def current_config(client: TestClient) -> Any:
    return client.app.state.config_source.current()  # type: ignore[attr-defined]


def test_keys_are_retired_once_their_tokens_expired() -> None:
    def record(kid: str, created: datetime) -> SigningKeyRecord:
        return SigningKeyRecord(kid, "EdDSA", "", {}, created)

    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    keys = [
        record("a", t0),
        record("b", t0 + timedelta(hours=1)),
        record("c", t0 + timedelta(hours=5)),
    ]
    lifetime = 1200
    just_after_b = t0 + timedelta(hours=1, seconds=lifetime) + RETIRE_MARGIN
    assert keys_to_retire(keys, just_after_b, lifetime) == []
    assert keys_to_retire(keys, just_after_b + timedelta(seconds=1), lifetime) == ["a"]
    # b stopped signing when c appeared: it verifies for a token lifetime more
    assert keys_to_retire(keys, t0 + timedelta(hours=5, minutes=10), lifetime) == ["a"]
    assert keys_to_retire(keys, t0 + timedelta(hours=6), lifetime) == ["a", "b"]


# -- discovery -------------------------------------------------------------------------------


def test_openid_configuration_and_jwks(anonymous: TestClient, service: TokenService) -> None:
    doc = anonymous.get("/.well-known/openid-configuration").json()
    assert doc["issuer"] == PUBLIC_URL
    assert doc["token_endpoint"] == f"{PUBLIC_URL}/api/auth/token"
    assert doc["device_authorization_endpoint"] == f"{PUBLIC_URL}/api/auth/device"
    assert doc["jwks_uri"] == f"{PUBLIC_URL}/.well-known/jwks.json"
    assert doc["userinfo_endpoint"] == f"{PUBLIC_URL}/api/auth/userinfo"
    assert doc["revocation_endpoint"] == f"{PUBLIC_URL}/api/auth/revoke"
    assert set(doc["grant_types_supported"]) == {
        "refresh_token",
        "client_credentials",
        DEVICE_CODE_GRANT,
    }
    assert {"vo:lhcb", "vo:dteam", "group:lhcb_admin", "property:VOAdmin"} <= set(
        doc["scopes_supported"]
    )
    r = anonymous.get("/.well-known/jwks.json")
    assert r.headers["cache-control"] == "public, max-age=60"
    (key,) = r.json()["keys"]
    assert key.keys() == {"kty", "crv", "x", "kid", "alg", "use"}
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    # what a client of ours would do: verify a token with the published key alone
    token = service.encode(good_claims(service))
    public = jwt.PyJWK(key).key
    assert jwt.decode(token, public, algorithms=["EdDSA"], audience="diracx")["sub"] == "alice"


# -- settings --------------------------------------------------------------------------------


def test_a_configured_service_needs_a_secret_key(settings: ServiceSettings) -> None:
    app = create_app(
        settings.model_copy(update={"secret_key": None}), job_queue=RecordingJobQueue()
    )
    with (
        pytest.raises(MissingSecretKeyError, match="DIRACX_SECRET_KEY is not set"),
        TestClient(app),
    ):
        pass


@pytest.fixture
def keyless_client(settings: ServiceSettings) -> Iterator[TestClient]:
    """The embedded-like service without configuration nor secret key: static token only."""
    keyless = settings.model_copy(update={"secret_key": None, "config": None})
    with TestClient(create_app(keyless, job_queue=RecordingJobQueue()), headers=AUTH) as c:
        yield c


def test_without_a_secret_key_no_token_is_issued(keyless_client: TestClient) -> None:
    r = keyless_client.post(
        "/api/auth/token", data={"grant_type": "refresh_token", "refresh_token": "x"}
    )
    assert r.status_code == 400
    assert "DIRACX_SECRET_KEY" in r.json()["error_description"]
    assert keyless_client.get("/api/auth/userinfo").json()["sub"] == "local"
    assert keyless_client.get("/.well-known/jwks.json").json() == {"keys": []}


def test_the_mint_token_fixture(mint_token: Any, anonymous: TestClient) -> None:
    token = mint_token(sub="carol", vo="dteam", group="dteam_ops")
    who = anonymous.get("/api/auth/userinfo", headers=bearer(token)).json()
    assert (who["vo"], who["group"]) == ("dteam", "dteam_ops")
    assert "ServiceAdministrator" in who["properties"]


def test_no_token_for_an_unknown_group(client: TestClient) -> None:
    from diracx.routers.oauth import OAuthError

    with pytest.raises(OAuthError, match="has no group 'dteam_user'"):
        mint_token(client, sub="alice", vo="lhcb", group="dteam_user")


def test_refresh_follows_the_configuration(client: TestClient, service: TokenService) -> None:
    """A user removed from the configuration cannot refresh; the login is revoked."""
    from diracx.routers.oauth import OAuthError

    assert client.portal is not None
    config = current_config(client)
    tokens = login(client, sub="bob", vo="lhcb", group="lhcb_user")
    lhcb = config.vos["lhcb"]
    without_bob = config.model_copy(
        update={
            "vos": {
                **config.vos,
                "lhcb": lhcb.model_copy(
                    update={"users": {k: v for k, v in lhcb.users.items() if k != "bob"}}
                ),
            }
        }
    )
    refresh_token = tokens.refresh_token
    assert refresh_token is not None
    with pytest.raises(OAuthError, match="'bob' is not a member of the VO 'lhcb'"):
        client.portal.call(service.refresh, refresh_token, without_bob)
    assert service.is_revoked(claims_of(tokens.access_token)["fam"])
