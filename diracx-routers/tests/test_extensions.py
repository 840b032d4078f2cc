"""Extensions seen from the service: a policy replaced by service name (nested routers
included, the API otherwise unchanged), mistakes refused when the app is built, and
DiracX as it ships (``builtin_only``). Entry points are added to importlib.metadata's."""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from diracx.core import extensions
from diracx.core.config import Config
from diracx.core.settings import ServiceSettings
from diracx.routers import create_app
from diracx.routers.queue import RecordingJobQueue
from diracx.routers.routing import iter_routes
from diracx.routers.store_gc import ServiceAdminAccess
from diracx.testing.auth import bearer, mint_token, two_vo_config


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """Extensions do not depend on the database backend: SQLite is enough."""
    return f"sqlite+aiosqlite:///{tmp_path / 'diracx.db'}"


@pytest.fixture
def app_config() -> Config:
    return two_vo_config()


def with_entry_points(
    monkeypatch: pytest.MonkeyPatch, *added: EntryPoint
) -> Callable[..., list[EntryPoint]]:
    def select(group: str) -> list[EntryPoint]:
        return [*entry_points(group=group), *(ep for ep in added if ep.group == group)]

    monkeypatch.setattr(extensions, "entry_points", select)
    return select


def operations(spec: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The operations under *prefix*, without what a policy adds (security, 401/403)."""
    found = {}
    for path, methods in spec["paths"].items():
        if not path.startswith(prefix):
            continue
        for method, op in methods.items():
            op = {k: v for k, v in op.items() if k != "security"}
            op["responses"] = sorted(set(op["responses"]) - {"401", "403"})
            found[f"{method} {path}"] = op
    return found


def test_a_policy_is_replaced_on_every_route_of_a_service(
    settings: ServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    ours = create_app(settings, job_queue=RecordingJobQueue())
    with_entry_points(
        monkeypatch,
        EntryPoint(
            "jobs", "diracx.routers.store_gc:ServiceAdminAccess", extensions.ACCESS_POLICIES
        ),
    )
    app = create_app(settings, job_queue=RecordingJobQueue())
    jobs = [r for r in iter_routes(app) if r.is_api_route and r.path.startswith("/api/jobs")]
    # the jobs router's own routes and those of the router it includes (job_search)
    assert {"/api/jobs/{job_id}", "/api/jobs/search", "/api/jobs/status"} <= {r.path for r in jobs}
    for route in jobs:
        policies = [d.dependency for d in route.dependencies if d.dependency is route.policy]
        assert route.policy is ServiceAdminAccess and len(policies) == 1, route.path
    others = [r for r in iter_routes(app) if r.is_api_route and r.path.startswith("/api/pipelines")]
    assert all(r.policy.describe() == "PropertyAccess(NormalUser)" for r in others)  # type: ignore[union-attr]
    # the API is the same, but for the policy
    assert operations(app.openapi(), "/api/jobs") == operations(ours.openapi(), "/api/jobs")

    with TestClient(app) as c:  # the jobs service only: for ServiceAdministrators now
        bob = bearer(mint_token(c, sub="bob", vo="lhcb", group="lhcb_user"))
        r = c.get("/api/jobs/1", headers=bob)
        assert r.status_code == 403
        assert r.json()["detail"] == "user 'bob' lacks the properties ServiceAdministrator"
        assert c.post("/api/jobs/search", json={}, headers=bob).status_code == 403
        assert c.get("/api/pipelines/1", headers=bob).status_code == 404  # allowed, not found
        carol = bearer(mint_token(c, sub="carol", vo="dteam", group="dteam_ops"))
        assert c.get("/api/jobs/1", headers=carol).status_code == 404
        assert c.post("/api/jobs/search", json={}, headers=carol).status_code == 200


@pytest.mark.parametrize(
    ("entry_point", "message"),
    [
        (
            EntryPoint("nope", "diracx.routers.auth:PublicAccess", extensions.ACCESS_POLICIES),
            "access policies are given for services that do not exist: nope",
        ),
        (
            EntryPoint("jobs", "diracx.routers.auth:LOCAL_USER", extensions.ACCESS_POLICIES),
            "access policy for 'jobs' .* is not an AccessPolicy",
        ),
        (
            EntryPoint("x", "diracx.core.version:__version__", extensions.DBS),
            "DB 'x' .* is not a class",
        ),
        (
            EntryPoint("x", "no_such_module:router", extensions.SERVICES),
            "entry point diracx.services:x = no_such_module:router .* cannot be loaded",
        ),
        (
            EntryPoint("x", "diracx.routers.auth:NORMAL_USER", extensions.MIN_CLIENT_VERSION),
            "minimum client version 'x' .* is not a version: 'NormalUser'",
        ),
    ],
)
def test_mistakes_of_extensions_stop_the_build(
    settings: ServiceSettings,
    monkeypatch: pytest.MonkeyPatch,
    entry_point: EntryPoint,
    message: str,
) -> None:
    with_entry_points(monkeypatch, entry_point)
    with pytest.raises(extensions.ExtensionError, match=message):
        create_app(settings, job_queue=RecordingJobQueue())


def test_builtin_only_ignores_extensions(monkeypatch: pytest.MonkeyPatch) -> None:
    theirs = EntryPoint("jobs", "myext:router", extensions.SERVICES)
    with_entry_points(monkeypatch, theirs)
    assert extensions.select_entry_points(extensions.SERVICES)["jobs"] == theirs
    with extensions.builtin_only():
        chosen = extensions.select_entry_points(extensions.SERVICES)
    assert chosen["jobs"].value == "diracx.routers.jobs:router"
    assert all(extensions.is_builtin(ep) for ep in chosen.values())
    assert extensions.select_entry_points(extensions.SERVICES)["jobs"] == theirs
