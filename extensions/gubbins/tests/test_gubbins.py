"""gubbins inside a real DiracX service: its router and DB (SQLite and PostgreSQL), the
policy it puts on DiracX's ``GET /api/config``, its minimum client version, and DiracX
as it ships (``builtin_only``) next to it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr

from diracx.core.extensions import builtin_only
from diracx.core.settings import ServiceSettings
from diracx.db.migrate import upgrade
from diracx.routers import create_app
from diracx.routers.queue import RecordingJobQueue
from diracx.routers.routing import iter_routes
from diracx.testing.auth import TEST_SECRET_KEY, bearer, mint_token, two_vo_config
from gubbins.policies import ConfigReaderAccess


def config_document() -> dict[str, Any]:
    """Two VOs; lhcb also has pilots, a group that holds no DiracX property."""
    doc = two_vo_config().model_dump(mode="json")
    doc["vos"]["lhcb"]["groups"]["lhcb_pilot"] = {"properties": ["GenericPilot"]}
    doc["vos"]["lhcb"]["users"]["pilot"] = {"groups": ["lhcb_pilot"]}
    return doc


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> ServiceSettings:
    upgrade(db_url)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(config_document()))
    return ServiceSettings(
        data_dir=tmp_path / "data",
        db_url=db_url,
        service_token=SecretStr("s3cret-test-token"),
        secret_key=SecretStr(TEST_SECRET_KEY),
        config=str(config),
        min_client_version="0.0.0",
        broker_url=None,
    )


@pytest.fixture
def client(settings: ServiceSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, job_queue=RecordingJobQueue())) as c:
        yield c


def token(client: TestClient, sub: str, vo: str, group: str) -> dict[str, str]:
    return bearer(mint_token(client, sub=sub, vo=vo, group=group))


def test_lollygags_stay_in_their_vo(client: TestClient) -> None:
    alice = token(client, "alice", "lhcb", "lhcb_user")
    bob = token(client, "bob", "lhcb", "lhcb_user")
    carol = token(client, "carol", "dteam", "dteam_user")

    r = client.post("/api/lollygag/teapot", headers=alice)
    assert r.status_code == 200, r.text
    assert r.json()["added"] is True
    assert (r.json()["name"], r.json()["owner"]) == ("teapot", "alice")
    again = client.post("/api/lollygag/teapot", headers=bob)
    assert again.json()["added"] is False and again.json()["owner"] == "alice"

    mine = client.get("/api/lollygag", headers=bob).json()
    assert mine["vo"] == "lhcb"
    assert mine["default_group"] == "lhcb_user"  # from the configuration in force
    assert [g["name"] for g in mine["lollygags"]] == ["teapot"]

    theirs = client.get("/api/lollygag", headers=carol).json()
    assert (theirs["vo"], theirs["lollygags"]) == ("dteam", [])
    # the same name in another VO is another lollygag
    assert client.post("/api/lollygag/teapot", headers=carol).json()["added"] is True


def test_lollygag_routes_check_their_input_and_policy(client: TestClient) -> None:
    alice = token(client, "alice", "lhcb", "lhcb_user")
    assert client.post("/api/lollygag/no%20spaces", headers=alice).status_code == 422
    assert client.post("/api/lollygag/" + "x" * 65, headers=alice).status_code == 422
    assert client.get("/api/lollygag").status_code == 401
    pilot = token(client, "pilot", "lhcb", "lhcb_pilot")
    assert client.get("/api/lollygag", headers=pilot).status_code == 403  # not a NormalUser


def test_the_db_was_opened_with_the_service(client: TestClient) -> None:
    from gubbins.db import LollygagDB

    dbs = client.app.state.extension_dbs  # type: ignore[attr-defined]
    assert isinstance(dbs["lollygag"], LollygagDB)
    assert client.portal is not None
    assert client.portal.call(dbs["lollygag"].list, "lhcb") == []


def test_gubbins_overrides_the_policy_of_diracx_config(
    client: TestClient, settings: ServiceSettings
) -> None:
    policies = {r.path: r.policy for r in iter_routes(client.app) if r.is_api_route}  # type: ignore[arg-type]
    assert isinstance(policies["/api/config"], ConfigReaderAccess)
    pilot = token(client, "pilot", "lhcb", "lhcb_pilot")
    r = client.get("/api/config", headers=pilot)
    assert r.status_code == 403
    assert "may not read the configuration" in r.json()["detail"]
    alice = token(client, "alice", "lhcb", "lhcb_user")
    assert set(client.get("/api/config", headers=alice).json()["vos"]) == {"lhcb"}

    # DiracX as it ships: any valid token reads its VO's configuration, and no lollygag
    with builtin_only():
        plain = create_app(settings, job_queue=RecordingJobQueue())
    with TestClient(plain) as c:
        pilot = token(c, "pilot", "lhcb", "lhcb_pilot")
        assert c.get("/api/config", headers=pilot).status_code == 200
        assert c.get("/api/lollygag", headers=pilot).status_code == 404
    assert "/api/lollygag" not in plain.openapi()["paths"]


def test_gubbins_can_raise_the_minimum_client_version(
    settings: ServiceSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUBBINS_MIN_CLIENT_VERSION", "2.5")
    app = create_app(settings, job_queue=RecordingJobQueue())
    with TestClient(app) as c:
        assert c.get("/.well-known/dirac-metadata").json()["min_client_version"] == "2.5"
        r = c.get("/api/lollygag", headers={"DiracX-Client-Version": "2.4.9", **bearer("x")})
        assert r.status_code == 400
        assert "upgrade diracx to at least 2.5" in r.json()["detail"]
    # never lowered below DiracX's own setting
    monkeypatch.setenv("GUBBINS_MIN_CLIENT_VERSION", "0.1")
    strict = settings.model_copy(update={"min_client_version": "1.0"})
    app = create_app(strict, job_queue=RecordingJobQueue())
    assert app.state.settings.min_client_version == "1.0"
