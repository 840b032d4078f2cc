"""``dirac login``'s server side: the device authorization grant (RFC 8628), with a VO
that logs in at an OpenID Connect provider (the test suite's, on loopback) and a VO
with built-in accounts.

The service runs for real (uvicorn on loopback, its database migrated), and a small
browser (httpx with forms, ``diracx.testing.browser``) plays the user: it opens the
verification URL, follows the redirects to the provider and back, fills in forms.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import Connection, update

from diracx.core.passwords import hash_password
from diracx.db.device_flows import DeviceFlowDB, FlowStatus
from diracx.db.engine import Engines
from diracx.db.migrate import upgrade
from diracx.db.schema import device_flows
from diracx.routers import create_app
from diracx.routers.device_flow import (
    USER_CODE_ALPHABET,
    hash_device_code,
    normalize_user_code,
    redeem_device_code,
)
from diracx.routers.oauth import DEVICE_CODE_GRANT, OAuthError
from diracx.routers.queue import RecordingJobQueue
from diracx.testing.auth import login_service_settings, sso_and_local_config
from diracx.testing.browser import Browser
from diracx.testing.loopback import LoopbackServer
from diracx.testing.oidc import OIDCProvider

CLIENT_ID = "dirac-cli"
IDP_CLIENT_ID = "diracx-service"
IDP_SECRET = "idp-client-secret"
PASSWORDS = {"dave": "dave's passphrase", "erin": "erin's passphrase", "frank": "frank's"}
LOGGED_IN = "You are logged in"


@pytest.fixture(scope="module")
def password_hashes() -> dict[str, str]:
    """argon2id is slow on purpose: hash the accounts' passwords once per module."""
    return {name: hash_password(password) for name, password in PASSWORDS.items()}


def service_config(issuer: str, password_hashes: dict[str, str]) -> dict[str, Any]:
    """Two VOs: ``sso`` (the test provider) and ``local`` (built-in accounts)."""
    return sso_and_local_config(
        issuer,
        client_id=IDP_CLIENT_ID,
        client_secret=IDP_SECRET,
        sso_users={
            "oidc-sub-alice": {"groups": ["users", "admins"]},
            "oidc-sub-bob": {"groups": ["users"], "preferred_username": "Bob B."},
            # carol is known to the provider, not to the VO
        },
        local_users={"dave": {"groups": ["users"]}, "erin": {"groups": ["admins"]}},
        password_hashes=password_hashes,  # frank has an account, but is in no VO
    )


class Service:
    """The running service, as a client and a user's browser see it."""

    def __init__(self, url: str, db_url: str, provider: OIDCProvider) -> None:
        self.url = url
        self.db_url = db_url
        self.provider = provider
        self.http = httpx.Client(base_url=url, timeout=30)

    def start_login(self, scope: str = "vo:sso", client_id: str = CLIENT_ID) -> dict[str, Any]:
        r = self.http.post("/api/auth/device", data={"client_id": client_id, "scope": scope})
        assert r.status_code == 200, r.text
        assert r.headers["cache-control"] == "no-store"
        body: dict[str, Any] = r.json()
        return body

    def token(self, device_code: str, client_id: str = CLIENT_ID) -> httpx.Response:
        """One poll of the token endpoint (RFC 8628 3.4)."""
        form = {"grant_type": DEVICE_CODE_GRANT, "device_code": device_code, "client_id": client_id}
        return self.http.post("/api/auth/token", data=form)

    def token_error(self, device_code: str, client_id: str = CLIENT_ID) -> str:
        r = self.token(device_code, client_id)
        assert r.status_code == 400, r.text
        error: str = r.json()["error"]
        return error


@pytest.fixture
def service(
    tmp_path: Path,
    db_url: str,
    oidc_provider: OIDCProvider,
    password_hashes: dict[str, str],
) -> Iterator[Service]:
    """The service with both VOs, its provider client registered at the test provider."""
    upgrade(db_url)
    with LoopbackServer() as server:
        oidc_provider.register_client(
            IDP_CLIENT_ID, f"{server.url}/api/auth/device/callback", secret=IDP_SECRET
        )
        settings = login_service_settings(
            tmp_path,
            db_url,
            service_config(oidc_provider.issuer, password_hashes),
            server.url,
            service_token=SecretStr("static-test-token"),
            min_client_version="0.0.0",
        )
        server.start(create_app(settings, job_queue=RecordingJobQueue()))
        svc = Service(server.url, db_url, oidc_provider)
        try:
            yield svc
        finally:
            svc.http.close()


@pytest.fixture
async def flows(service: Service) -> AsyncIterator[DeviceFlowDB]:
    """The service's device flows, read (and, to move time, changed) by the test."""
    engines = Engines(service.db_url)
    try:
        yield DeviceFlowDB(engines)
    finally:
        await engines.dispose()


async def set_columns(db: DeviceFlowDB, device_code: str, **values: Any) -> None:
    """Change a stored request behind the service's back (an expiry in the past...)."""

    def tx(conn: Connection) -> None:
        conn.execute(
            update(device_flows)
            .where(device_flows.c.device_code_hash == hash_device_code(device_code))
            .values(**values)
        )

    await db.engines.write(tx)


async def status_of(db: DeviceFlowDB, start: dict[str, Any]) -> FlowStatus:
    flow = await db.by_user_code(normalize_user_code(start["user_code"]) or "")
    assert flow is not None
    return flow.status


def shown(page: httpx.Response) -> str:
    """A page's text as the user reads it (entities decoded)."""
    return unescape(page.text)


def userinfo(service: Service, tokens: dict[str, Any]) -> dict[str, Any]:
    r = service.http.get(
        "/api/auth/userinfo", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert r.status_code == 200, r.text
    info: dict[str, Any] = r.json()
    return info


# -- the device authorization request -----------------------------------------------------


def test_device_authorization_response(service: Service) -> None:
    start = service.start_login("vo:sso group:admins")
    assert set(start) == {
        "device_code",
        "user_code",
        "verification_uri",
        "verification_uri_complete",
        "expires_in",
        "interval",
    }
    assert start["verification_uri"] == f"{service.url}/api/auth/device"
    code = start["user_code"]
    assert len(code) == 9 and code[4] == "-"
    assert set(code.replace("-", "")) <= set(USER_CODE_ALPHABET)
    assert start["verification_uri_complete"] == f"{start['verification_uri']}?user_code={code}"
    assert start["expires_in"] == 600 and start["interval"] == 5
    assert len(start["device_code"]) >= 40
    assert start["device_code"] != service.start_login()["device_code"]


async def test_only_the_device_codes_hash_is_stored(service: Service, flows: DeviceFlowDB) -> None:
    start = service.start_login("vo:local")
    flow = await flows.by_user_code(normalize_user_code(start["user_code"]) or "")
    assert flow is not None
    assert flow.device_code_hash == hash_device_code(start["device_code"])
    assert start["device_code"] not in repr(flow)
    assert (flow.vo, flow.group, flow.scope, flow.client_id) == (
        "local",
        None,
        "vo:local",
        CLIENT_ID,
    )


DEVICE_REQUEST_ERRORS = [
    ({"scope": "vo:sso"}, "invalid_request", "client_id is required"),
    ({"client_id": "a b", "scope": "vo:sso"}, "invalid_request", "printable"),
    ({"client_id": CLIENT_ID}, "invalid_scope", "name the VO"),  # two VOs configured
    ({"client_id": CLIENT_ID, "scope": "vo:nope"}, "invalid_scope", "unknown VO"),
    ({"client_id": CLIENT_ID, "scope": "vo:sso group:nope"}, "invalid_scope", "no group"),
    ({"client_id": CLIENT_ID, "scope": "vo:sso vo:local"}, "invalid_request", "more than"),
    ({"client_id": CLIENT_ID, "scope": "vo:sso write:all"}, "invalid_scope", "unknown scope"),
    ({"client_id": CLIENT_ID, "scope": "vo:sso property:VOAdmin"}, "invalid_scope", "hold"),
    ({"client_id": CLIENT_ID, "scope": "vo:sso " * 200}, "invalid_scope", "longer than"),
]


def test_device_authorization_errors(service: Service) -> None:
    """RFC 6749 5.2 errors, as JSON, for what the service cannot start a login for."""
    for form, error, words in DEVICE_REQUEST_ERRORS:
        r = service.http.post("/api/auth/device", data=form)
        assert r.status_code == 400, (form, r.text)
        assert r.json()["error"] == error, (form, r.text)
        assert words in r.json()["error_description"], (form, r.text)
        assert r.headers["cache-control"] == "no-store"


def test_scope_with_openid_scopes_and_a_held_property(service: Service) -> None:
    start = service.start_login("openid offline_access vo:sso group:admins property:VOAdmin")
    assert start["user_code"]


# -- a VO with an OpenID Connect provider ----------------------------------------------


def test_login_at_the_identity_provider(service: Service, browser: Browser) -> None:
    """The whole flow: start, the user logs in at the provider, the client gets tokens."""
    start = service.start_login("vo:sso")
    assert service.token_error(start["device_code"]) == "authorization_pending"
    service.provider.login_as("alice")
    page = browser.open(start["verification_uri_complete"])
    assert page.status_code == 200, page.text
    assert LOGGED_IN in page.text and "go back to your terminal" in page.text.lower()
    assert page.url.path == "/api/auth/device/callback"
    assert "VO sso, group users" in page.text
    # the client polls at its interval: move the previous poll back instead of waiting
    asyncio.run(_forget_last_poll(service, start["device_code"]))
    r = service.token(start["device_code"])
    assert r.status_code == 200, r.text
    tokens = r.json()
    assert tokens["token_type"] == "Bearer" and tokens["refresh_token"]
    info = userinfo(service, tokens)
    assert info["sub"] == "oidc-sub-alice" and info["preferred_username"] == "alice"
    assert (info["vo"], info["group"]) == ("sso", "users")
    # a device code is good for one set of tokens
    assert service.token_error(start["device_code"]) == "invalid_grant"
    # and the provider's answer for one login
    again = browser.open(str(page.url))
    assert again.status_code == 400 and "belongs to no login in progress" in again.text


async def _forget_last_poll(service: Service, device_code: str) -> None:
    engines = Engines(service.db_url)
    try:
        await set_columns(DeviceFlowDB(engines), device_code, last_poll=None)
    finally:
        await engines.dispose()


def test_provider_login_form_and_chosen_group(service: Service, browser: Browser) -> None:
    """Nobody logged in at the provider yet: its own form asks who; the group asked for
    is the token's, and the configured name is the one shown."""
    start = service.start_login("vo:sso group:admins")
    form = browser.open(start["verification_uri_complete"])
    assert form.url.host == "127.0.0.1" and form.url.path == "/authorize"
    page = browser.submit(form, username="alice")
    assert LOGGED_IN in page.text and "group admins" in page.text
    tokens = service.token(start["device_code"]).json()
    assert userinfo(service, tokens)["group"] == "admins"

    start = service.start_login("vo:sso")
    page = browser.submit(browser.open(start["verification_uri_complete"]), username="bob")
    assert "logged in as Bob B." in page.text
    info = userinfo(service, service.token(start["device_code"]).json())
    assert (info["sub"], info["preferred_username"]) == ("oidc-sub-bob", "Bob B.")


async def test_provider_user_outside_the_vo_or_group(
    service: Service, browser: Browser, flows: DeviceFlowDB
) -> None:
    start = service.start_login("vo:sso")
    service.provider.login_as("carol")
    page = browser.open(start["verification_uri_complete"])
    assert page.status_code == 403
    assert "'oidc-sub-carol' is not a member of VO 'sso'" in shown(page)
    assert await status_of(flows, start) is FlowStatus.PENDING
    # the user may try again with the right account
    service.provider.login_as("alice")
    assert LOGGED_IN in browser.open(start["verification_uri_complete"]).text

    start = service.start_login("vo:sso group:admins")
    service.provider.login_as("bob")
    page = browser.open(start["verification_uri_complete"])
    assert page.status_code == 403 and "not in group 'admins'" in shown(page)
    assert await status_of(flows, start) is FlowStatus.PENDING


async def test_user_declines_at_the_provider(
    service: Service, browser: Browser, flows: DeviceFlowDB
) -> None:
    start = service.start_login("vo:sso")
    form = browser.open(start["verification_uri_complete"])
    page = browser.submit(form, button="deny")
    assert page.status_code == 200 and "Login denied" in page.text
    assert await status_of(flows, start) is FlowStatus.DENIED
    assert service.token_error(start["device_code"]) == "access_denied"
    # the page no longer logs in
    page = browser.open(start["verification_uri_complete"])
    assert page.status_code == 400 and "denied" in page.text


async def test_pkce_verifier_mismatch_is_refused_by_the_provider(
    service: Service, browser: Browser, flows: DeviceFlowDB
) -> None:
    """The code is only good with the verifier of its challenge: a different verifier
    (as an attacker holding a stolen code would have) makes the provider refuse it."""
    start = service.start_login("vo:sso")
    service.provider.login_as("alice")
    to_provider = browser.client.get(start["verification_uri_complete"], follow_redirects=False)
    assert to_provider.status_code == 302
    query = parse_qs(urlsplit(to_provider.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"] and query["response_type"] == ["code"]
    assert query["client_id"] == [IDP_CLIENT_ID] and "openid" in query["scope"][0].split()
    assert query["redirect_uri"] == [f"{service.url}/api/auth/device/callback"]
    assert query["state"][0] and query["nonce"][0]
    await set_columns(flows, start["device_code"], idp_code_verifier="x" * 64)
    page = browser.open(to_provider.headers["location"])
    assert page.status_code == 400
    assert "invalid_grant" in page.text and "PKCE" in page.text
    assert await status_of(flows, start) is FlowStatus.PENDING


async def test_state_mismatch_is_refused(
    service: Service, browser: Browser, flows: DeviceFlowDB
) -> None:
    start = service.start_login("vo:sso")
    service.provider.login_as("alice")
    to_provider = browser.client.get(start["verification_uri_complete"], follow_redirects=False)
    back = browser.client.get(to_provider.headers["location"], follow_redirects=False)
    callback = urlsplit(back.headers["location"])
    answer = {k: v[0] for k, v in parse_qs(callback.query).items()}
    assert set(answer) >= {"code", "state"}
    forged = {**answer, "state": answer["state"][:-2] + "xx"}
    page = browser.open(f"{service.url}{callback.path}?{urlencode(forged)}")
    assert page.status_code == 400 and "belongs to no login in progress" in page.text
    page = browser.open(f"{service.url}{callback.path}?code={answer['code']}")
    assert page.status_code == 400
    assert await status_of(flows, start) is FlowStatus.PENDING
    # the genuine answer still works
    page = browser.open(back.headers["location"])
    assert LOGGED_IN in page.text
    assert await status_of(flows, start) is FlowStatus.APPROVED


ID_TOKEN_FAULTS: list[tuple[dict[str, Any], str]] = [
    ({"aud": "another-client"}, "Audience"),
    ({"iss": "https://evil.example"}, "issuer"),
    ({"exp": 1_000_000_000}, "expired"),
    ({"nonce": "a-replayed-nonce"}, "nonce"),
    ({"nonce": None}, "nonce"),
    ({"sub": None}, "sub"),
    ({"aud": [IDP_CLIENT_ID, "other"], "azp": "other"}, "azp"),
]


async def test_id_token_checks(service: Service, browser: Browser, flows: DeviceFlowDB) -> None:
    """An ID token with a wrong claim (signed by the right key) logs nobody in."""
    service.provider.login_as("alice")
    for claims, words in ID_TOKEN_FAULTS:
        start = service.start_login("vo:sso")
        service.provider.tamper_id_tokens(**claims)
        page = browser.open(start["verification_uri_complete"])
        assert page.status_code == 400, (claims, page.text)
        assert "ID token" in page.text and words in page.text, (claims, page.text)
        assert await status_of(flows, start) is FlowStatus.PENDING


def test_provider_key_rotation(service: Service, browser: Browser) -> None:
    """The provider's keys are cached; a token signed with a new key fetches them again."""
    service.provider.login_as("alice")
    for _ in range(2):
        start = service.start_login("vo:sso")
        assert LOGGED_IN in browser.open(start["verification_uri_complete"]).text
        service.provider.rotate_key()
        service.provider.unpublish_old_keys()


def test_provider_unreachable(
    tmp_path: Path, db_url: str, password_hashes: dict[str, str], browser: Browser
) -> None:
    with LoopbackServer() as dead:  # a port nobody serves once closed
        issuer = dead.url
    upgrade(db_url)
    with LoopbackServer() as server:
        config = service_config(issuer, password_hashes)
        settings = login_service_settings(tmp_path, db_url, config, server.url)
        server.start(create_app(settings, job_queue=RecordingJobQueue()))
        r = httpx.post(
            f"{server.url}/api/auth/device", data={"client_id": CLIENT_ID, "scope": "vo:sso"}
        )
        page = browser.open(r.json()["verification_uri_complete"])
        assert page.status_code == 502
        assert "identity provider of VO 'sso' cannot be used now" in shown(page)


# -- a VO with built-in accounts ---------------------------------------------------------


def test_login_with_a_built_in_account(service: Service, browser: Browser) -> None:
    start = service.start_login("vo:local")
    form = browser.open(start["verification_uri_complete"])
    assert form.status_code == 200
    assert form.headers["content-type"].startswith("text/html")
    assert form.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in form.headers["content-security-policy"]
    assert start["user_code"] in form.text and CLIENT_ID in form.text
    page = browser.submit(form, username="dave", password=PASSWORDS["dave"])
    assert page.status_code == 200 and LOGGED_IN in page.text
    tokens = service.token(start["device_code"]).json()
    info = userinfo(service, tokens)
    assert (info["sub"], info["vo"], info["group"]) == ("dave", "local", "users")


async def test_wrong_password_or_unknown_account(
    service: Service, browser: Browser, flows: DeviceFlowDB
) -> None:
    start = service.start_login("vo:local")
    form = browser.open(start["verification_uri_complete"])
    answers = [
        browser.submit(form, username="dave", password="wrong"),
        browser.submit(form, username="nobody", password=PASSWORDS["dave"]),
        browser.submit(form, username="dave", password=""),
    ]
    for page in answers:
        assert page.status_code == 401
        assert "Wrong username or password." in page.text
        assert "name=password type=password" in page.text  # the form again
    assert answers[0].text == answers[1].text.replace("nobody", "dave")
    assert await status_of(flows, start) is FlowStatus.PENDING
    page = browser.submit(answers[0], username="dave", password=PASSWORDS["dave"])
    assert LOGGED_IN in page.text


async def test_account_outside_the_vo_or_group(
    service: Service, browser: Browser, flows: DeviceFlowDB
) -> None:
    start = service.start_login("vo:local")
    form = browser.open(start["verification_uri_complete"])
    page = browser.submit(form, username="frank", password=PASSWORDS["frank"])
    assert page.status_code == 403 and "'frank' is not a member of VO 'local'" in shown(page)

    start = service.start_login("vo:local group:admins")
    form = browser.open(start["verification_uri_complete"])
    page = browser.submit(form, username="dave", password=PASSWORDS["dave"])
    assert page.status_code == 403 and "not in group 'admins'" in shown(page)
    assert await status_of(flows, start) is FlowStatus.PENDING

    # no group asked, and erin is not in the default one: her own group
    start = service.start_login("vo:local")
    form = browser.open(start["verification_uri_complete"])
    page = browser.submit(form, username="erin", password=PASSWORDS["erin"])
    assert LOGGED_IN in page.text and "group admins" in page.text


async def test_user_denies_in_the_form(
    service: Service, browser: Browser, flows: DeviceFlowDB
) -> None:
    start = service.start_login("vo:local")
    page = browser.submit(browser.open(start["verification_uri_complete"]), button="deny")
    assert "Login denied" in page.text
    assert service.token_error(start["device_code"]) == "access_denied"
    assert await status_of(flows, start) is FlowStatus.DENIED


def test_password_form_is_not_offered_to_a_provider_vo(service: Service) -> None:
    start = service.start_login("vo:sso")
    r = service.http.post(
        "/api/auth/device/login",
        data={"user_code": start["user_code"], "username": "dave", "password": PASSWORDS["dave"]},
    )
    assert r.status_code == 400 and "identity provider" in r.text


# -- the verification page ------------------------------------------------------------------


def test_verification_page(service: Service, browser: Browser) -> None:
    page = browser.open(f"{service.url}/api/auth/device")
    assert page.status_code == 200 and "name=user_code" in page.text
    for code in ("BCDF-GHJK", "not a code", "x" * 64):
        page = browser.open(f"{service.url}/api/auth/device?user_code={code}")
        assert page.status_code == 400 and "This code is not valid" in page.text
    start = service.start_login("vo:local")
    typed = start["user_code"].replace("-", " ").lower()
    page = browser.submit(browser.open(f"{service.url}/api/auth/device"), user_code=typed)
    assert page.status_code == 200 and "name=password" in page.text


def test_pages_escape_what_they_show(service: Service, browser: Browser) -> None:
    start = service.start_login("vo:local", client_id="<script>alert(1)</script>")
    page = browser.open(start["verification_uri_complete"])
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text


def test_normalize_user_code() -> None:
    assert normalize_user_code("bcdf-ghjk") == "BCDFGHJK"
    assert normalize_user_code(" BCDF GHJK ") == "BCDFGHJK"
    assert normalize_user_code("BCDF-GHJA") is None  # a vowel: never drawn
    assert normalize_user_code("BCDF") is None


# -- polling (RFC 8628 3.5) ---------------------------------------------------------------


async def test_polling_errors(service: Service, browser: Browser, flows: DeviceFlowDB) -> None:
    start = service.start_login("vo:local")
    device_code = start["device_code"]
    assert service.token_error(device_code) == "authorization_pending"
    assert service.token_error(device_code) == "slow_down"  # polled again at once
    await set_columns(flows, device_code, last_poll=datetime.now(UTC) - timedelta(seconds=5))
    assert service.token_error(device_code) == "authorization_pending"
    assert service.token_error("not-a-device-code") == "invalid_grant"
    assert service.token_error(device_code, client_id="another-client") == "invalid_grant"
    # expired: the client is told so, and the page does not log in any more
    await set_columns(flows, device_code, expires=datetime.now(UTC) - timedelta(seconds=1))
    assert service.token_error(device_code) == "expired_token"
    page = browser.open(start["verification_uri_complete"])
    assert page.status_code == 400 and "expired" in page.text


async def test_redeem_device_code(service: Service, browser: Browser, flows: DeviceFlowDB) -> None:
    """The function the token endpoint calls: one identity, once, even when raced."""
    start = service.start_login("vo:local group:users")
    device_code = start["device_code"]
    with pytest.raises(OAuthError) as pending:
        await redeem_device_code(flows, device_code, CLIENT_ID)
    assert pending.value.error == "authorization_pending" and pending.value.status_code == 400
    page = browser.submit(
        browser.open(start["verification_uri_complete"]),
        username="dave",
        password=PASSWORDS["dave"],
    )
    assert LOGGED_IN in page.text
    results = await asyncio.gather(
        *(redeem_device_code(flows, device_code, CLIENT_ID) for _ in range(4)),
        return_exceptions=True,
    )
    identities = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, OAuthError)]
    assert len(identities) == 1 and len(errors) == 3, results
    identity = identities[0]
    assert (identity.sub, identity.preferred_username) == ("dave", "dave")
    assert (identity.vo, identity.group, identity.client_id) == ("local", "users", CLIENT_ID)
    assert {e.error for e in errors} == {"invalid_grant"}
    assert await status_of(flows, start) is FlowStatus.CONSUMED
