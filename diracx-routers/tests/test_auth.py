"""Every route declares an access policy; protected ones need the bearer token."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from diracx.core.settings import ServiceSettings
from diracx.routers import create_app
from diracx.routers.auth import AccessPolicy, PublicAccess
from diracx.routers.queue import RecordingJobQueue
from diracx.routers.routing import (
    DiracxRouter,
    UndeclaredAccessPolicyError,
    check_policies,
    iter_routes,
)

# Starlette routes FastAPI adds itself: the spec and its UI are public.
DOCS_ROUTES = {"/api/openapi.json", "/api/docs", "/api/docs/oauth2-redirect"}
PUBLIC_ROUTES = {"/api/health/live", "/api/health/ready", "/.well-known/dirac-metadata"}
# DiracX's own tokens: the grants authenticate the caller themselves; discovery is public
PUBLIC_ROUTES |= {
    "/api/auth/token",
    "/api/auth/revoke",
    "/.well-known/openid-configuration",
    "/.well-known/jwks.json",
}
# dirac login's device flow (diracx.routers.device_flow): before the user has a token
PUBLIC_ROUTES |= {
    "/api/auth/device",
    "/api/auth/device/login",
    "/api/auth/device/callback",
}
# the startup probe (diracx.routers.health)
PUBLIC_ROUTES |= {"/api/health/startup"}
SAMPLE_PARAMS = {
    "digest": "0" * 64,
    "rref": "0" * 64,
    "dref": "0" * 64,
    "pipeline_id": "1",
    "job_id": "1",
    "name": "a-pin",
}


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """Authentication does not depend on the database backend: SQLite is enough."""
    return f"sqlite+aiosqlite:///{tmp_path / 'diracx.db'}"


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLE_PARAMS[m.group(1)], path)


def test_every_route_requires_a_token_unless_public(
    client: TestClient, anonymous: TestClient
) -> None:
    seen_api = 0
    for route in iter_routes(client.app):  # type: ignore[arg-type]
        if not route.is_api_route:
            assert route.path in DOCS_ROUTES, f"unexpected non-API route {route.path}"
            continue
        seen_api += 1
        policy = route.policy
        assert isinstance(policy, AccessPolicy), f"{route.path} declares no policy"
        assert (route.path in PUBLIC_ROUTES) == isinstance(policy, PublicAccess), route.path
        for method in route.methods:
            url = concrete(route.path)
            kwargs: dict[str, Any] = {"json": {"digests": []}} if method == "POST" else {}
            anon = anonymous.request(method, url, **kwargs)
            wrong = anonymous.request(
                method, url, headers={"Authorization": "Bearer not-the-token"}, **kwargs
            )
            authed = client.request(method, url, **kwargs)
            assert authed.status_code not in (401, 403), f"{method} {route.path}: {authed.text}"
            assert authed.status_code < 500, f"{method} {route.path}: {authed.text}"
            if isinstance(policy, PublicAccess):
                assert anon.status_code != 401, f"{method} {route.path} should be public"
                continue
            for response in (anon, wrong):
                assert response.status_code == 401, f"{method} {route.path} is not protected"
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json()["detail"]
    # a new route: count it here (and give its parameters above). + 2: GET /api/config and
    # /api/health/startup; + 2: the example extension gubbins, installed in the workspace
    # (GET /api/lollygag, POST /api/lollygag/{name}); + 4: GET /api/pipelines, POST
    # /api/pipelines/{pipeline_id}/cancel and /retry, PATCH /api/jobs/heartbeat
    assert seen_api == 33 + 5 + 4 + 2 + 2 + 4


def test_missing_and_wrong_token_messages(anonymous: TestClient) -> None:
    r = anonymous.get("/api/jobs/1")
    assert r.status_code == 401
    assert r.json() == {"detail": "authentication required: send 'Authorization: Bearer <token>'"}
    r = anonymous.get("/api/jobs/1", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401
    assert "invalid bearer token" in r.json()["detail"]
    r = anonymous.get("/api/jobs/1", headers={"Authorization": "Basic dXNlcjpwdw=="})
    assert r.status_code == 401


def test_service_without_a_token_accepts_nobody(settings: ServiceSettings) -> None:
    app = create_app(
        settings.model_copy(update={"service_token": None}), job_queue=RecordingJobQueue()
    )
    with TestClient(app, headers={"Authorization": "Bearer anything"}) as c:
        r = c.get("/api/jobs/1")
        assert r.status_code == 401
        assert "DIRACX_SERVICE_TOKEN" in r.json()["detail"]
        assert c.get("/api/health/live").status_code == 200


def test_a_route_without_policy_is_refused() -> None:
    app = FastAPI()
    rogue = APIRouter(prefix="/rogue")

    @rogue.get("/secrets")
    async def leak() -> dict[str, str]:
        return {}

    covered = DiracxRouter(policy=PublicAccess(), prefix="/fine")

    @covered.get("/ok")
    async def ok() -> dict[str, str]:
        return {}

    app.include_router(covered, prefix="/api")
    check_policies(app)  # a DiracxRouter's routes are covered
    app.include_router(rogue, prefix="/api")
    with pytest.raises(UndeclaredAccessPolicyError, match=r"GET /api/rogue/secrets \(leak\)"):
        check_policies(app)


def test_diracx_router_requires_a_policy() -> None:
    with pytest.raises(TypeError):
        DiracxRouter(policy=None)  # type: ignore[arg-type]


# -- client version -------------------------------------------------------------------------


@pytest.fixture
def strict_client(settings: ServiceSettings) -> TestClient:
    strict = settings.model_copy(
        update={"min_client_version": "1.2.0", "service_token": SecretStr("t")}
    )
    return TestClient(
        create_app(strict, job_queue=RecordingJobQueue()), headers={"Authorization": "Bearer t"}
    )


@pytest.mark.parametrize("version", ["1.1.9", "0.0.1.dev0", "not-a-version"])
def test_old_client_is_told_to_upgrade(strict_client: TestClient, version: str) -> None:
    with strict_client as c:
        r = c.get("/api/jobs/1", headers={"DiracX-Client-Version": version})
    assert r.status_code == 400
    assert r.json() == {
        "detail": f"client version {version} is older than the minimum 1.2.0: "
        "upgrade diracx to at least 1.2.0 (pip install -U 'diracx>=1.2.0')"
    }


@pytest.mark.parametrize("version", ["1.2.0", "1.10.0", None])
def test_recent_or_unversioned_client_is_served(
    strict_client: TestClient, version: str | None
) -> None:
    headers = {"DiracX-Client-Version": version} if version else {}
    with strict_client as c:
        r = c.get("/api/jobs/1", headers=headers)
    assert r.status_code == 404  # served: the job does not exist


def test_old_client_can_still_discover_the_minimum(strict_client: TestClient) -> None:
    headers = {"DiracX-Client-Version": "0.1"}
    with strict_client as c:
        meta = c.get("/.well-known/dirac-metadata", headers=headers)
        assert meta.status_code == 200
        assert meta.json()["min_client_version"] == "1.2.0"
        assert c.get("/api/health/live", headers=headers).status_code == 200
