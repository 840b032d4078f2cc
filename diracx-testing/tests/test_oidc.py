"""The test OpenID Connect provider speaks the protocol, and refuses what it must."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from diracx.testing.browser import Browser, forms
from diracx.testing.oidc import OIDCProvider, s256

REDIRECT_URI = "http://127.0.0.1:9/callback"  # never reached: redirects are not followed
CLIENT = "relying-party"
SECRET = "rp-secret"


@pytest.fixture
def provider(oidc_provider: OIDCProvider) -> OIDCProvider:
    oidc_provider.register_client(CLIENT, REDIRECT_URI, secret=SECRET)
    return oidc_provider


def authorize(provider: OIDCProvider, **overrides: str) -> httpx.Response:
    verifier = overrides.pop("verifier", "v" * 50)
    params = {
        "response_type": "code",
        "client_id": CLIENT,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile",
        "state": "the-state",
        "nonce": "the-nonce",
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        **overrides,
    }
    return httpx.get(f"{provider.issuer}/authorize", params=params)


def answer(response: httpx.Response) -> dict[str, str]:
    """The query of the redirect back to the client."""
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def exchange(
    provider: OIDCProvider,
    code: str,
    auth: tuple[str, str] | None = (CLIENT, SECRET),
    **fields: str,
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": "v" * 50,
        **fields,
    }
    return httpx.post(f"{provider.issuer}/token", data=form, auth=auth)


def test_discovery_and_a_verified_id_token(provider: OIDCProvider) -> None:
    meta = httpx.get(f"{provider.issuer}/.well-known/openid-configuration").json()
    assert meta["issuer"] == provider.issuer
    assert meta["code_challenge_methods_supported"] == ["S256"]
    provider.login_as("alice")
    back = answer(authorize(provider))
    assert back["state"] == "the-state" and back["iss"] == provider.issuer
    tokens = exchange(provider, back["code"]).json()
    keys = jwt.PyJWKSet.from_dict(httpx.get(meta["jwks_uri"]).json())
    kid = jwt.get_unverified_header(tokens["id_token"])["kid"]
    claims = jwt.decode(
        tokens["id_token"],
        keys[kid].key,
        algorithms=["RS256"],
        audience=CLIENT,
        issuer=provider.issuer,
    )
    assert claims["sub"] == provider.subject("alice") and claims["nonce"] == "the-nonce"
    assert claims["preferred_username"] == "alice" and claims["exp"] > claims["iat"]
    info = httpx.get(
        meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert info.json()["sub"] == provider.subject("alice")


def test_bad_client_or_redirect_uri_is_shown_not_redirected(provider: OIDCProvider) -> None:
    provider.login_as("alice")
    for overrides in ({"client_id": "nobody"}, {"redirect_uri": "http://127.0.0.1:9/other"}):
        r = authorize(provider, **overrides)
        assert r.status_code == 400 and "location" not in r.headers


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "profile"}, "invalid_scope"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": ""}, "invalid_request"),
    ],
)
def test_authorization_errors_go_back_to_the_client(
    provider: OIDCProvider, overrides: dict[str, str], error: str
) -> None:
    provider.login_as("alice")
    back = answer(authorize(provider, **overrides))
    assert back["error"] == error and back["state"] == "the-state"


def test_login_form_and_decline(provider: OIDCProvider) -> None:
    with Browser() as browser:
        form = browser.client.get(authorize(provider).url, follow_redirects=False)
        assert form.status_code == 200 and forms(form)[0].buttons
        browser.client.follow_redirects = False
        assert browser.submit(form, username="mallory").status_code == 401
        back = answer(browser.submit(form, username="bob"))
        token = exchange(provider, back["code"]).json()["id_token"]
        assert jwt.decode(token, options={"verify_signature": False})["sub"] == "oidc-sub-bob"
        assert answer(browser.submit(form, button="deny"))["error"] == "access_denied"
    provider.login_as("alice")
    provider.decline()
    assert answer(authorize(provider))["error"] == "access_denied"


def test_token_endpoint_refusals(provider: OIDCProvider) -> None:
    provider.login_as("carol")

    def code() -> str:
        return answer(authorize(provider))["code"]

    wrong_verifier = exchange(provider, code(), code_verifier=secrets.token_urlsafe(40))
    assert wrong_verifier.status_code == 400
    assert wrong_verifier.json()["error"] == "invalid_grant"
    assert "PKCE" in wrong_verifier.json()["error_description"]
    assert exchange(provider, code(), redirect_uri="http://x/").json()["error"] == "invalid_grant"
    assert exchange(provider, code(), grant_type="password").json()["error"] == (
        "unsupported_grant_type"
    )
    no_secret = exchange(provider, code(), auth=None, client_id=CLIENT)
    assert no_secret.status_code == 401 and no_secret.json()["error"] == "invalid_client"
    # the secret in the body (client_secret_post) is accepted too; a code works once
    once = code()
    assert exchange(provider, once, auth=None, client_id=CLIENT, client_secret=SECRET).is_success
    assert exchange(provider, once).json()["error"] == "invalid_grant"


def test_public_client_and_key_rotation(oidc_provider: OIDCProvider) -> None:
    oidc_provider.register_client(CLIENT, [REDIRECT_URI])  # no secret: PKCE only
    oidc_provider.login_as("alice")
    first = oidc_provider.rotate_key()
    back = answer(authorize(oidc_provider))
    r = exchange(oidc_provider, back["code"], auth=None, client_id=CLIENT)
    assert r.status_code == 200
    assert jwt.get_unverified_header(r.json()["id_token"])["kid"] == first
    oidc_provider.rotate_key()
    oidc_provider.unpublish_old_keys()
    kids = [k["kid"] for k in httpx.get(f"{oidc_provider.issuer}/jwks").json()["keys"]]
    assert first not in kids and len(kids) == 1
