"""``GET /api/config``: each user sees their VO (an administrator every VO), never a secret;
ETag and 304; a new version served without a restart; a bad one refused at startup.

The app runs for real (lifespan, migrated SQLite database, real access tokens).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from pydantic import SecretStr

from diracx.core.config_source import ConfigError
from diracx.core.passwords import hash_password
from diracx.core.settings import ServiceSettings
from diracx.routers import create_app
from diracx.routers.queue import RecordingJobQueue
from diracx.testing.auth import TEST_SECRET_KEY, bearer, mint_token, two_vo_config

CLIENT_SECRET = "lhcb-oidc-client-secret"
PASSWORD_HASH = hash_password("carol's password")


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """What is served does not depend on the database backend: SQLite is enough."""
    return f"sqlite+aiosqlite:///{tmp_path / 'diracx.db'}"


def config_document(**lhcb: Any) -> dict[str, Any]:
    """Two VOs with every kind of secret: an OIDC client secret, password and secret hashes."""
    doc = two_vo_config().model_dump(mode="json")
    doc["vos"]["lhcb"]["identity_provider"] = {
        "issuer": "https://auth.example.org/realms/lhcb",
        "client_id": "diracx",
        "client_secret": CLIENT_SECRET,
    }
    doc["vos"]["lhcb"].update(lhcb)
    doc["accounts"] = {"carol": {"password_hash": PASSWORD_HASH}}
    return doc


def write(path: Path, doc: object) -> None:
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    if path.stat().st_mtime_ns <= before:  # a new mtime even within the clock's resolution
        os.utime(path, ns=(before + 1_000_000, before + 1_000_000))


@pytest.fixture
def config_path(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    write(path, config_document())
    return path


@pytest.fixture
def settings(settings: ServiceSettings, config_path: Path) -> ServiceSettings:
    """The conftest's service, serving the document at *config_path* (re-read quickly)."""
    update = {"secret_key": SecretStr(TEST_SECRET_KEY), "config": str(config_path)}
    return settings.model_copy(update={**update, "config_reload_interval": 0.05})


@pytest.fixture
def client(settings: ServiceSettings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, job_queue=RecordingJobQueue())) as c:
        yield c


@pytest.fixture
def alice(client: TestClient) -> dict[str, str]:
    return bearer(mint_token(client, sub="alice", vo="lhcb", group="lhcb_user"))


@pytest.fixture
def carol_ops(client: TestClient) -> dict[str, str]:
    """carol in dteam_ops: a ServiceAdministrator."""
    return bearer(mint_token(client, sub="carol", vo="dteam", group="dteam_ops"))


def assert_no_secret(text: str) -> None:
    assert CLIENT_SECRET not in text
    assert "$argon2id$" not in text  # neither password hashes nor service account secrets
    assert "password_hash" not in text and "secret_hash" not in text
    assert "client_secret" not in text


def test_a_user_sees_their_vo_only(client: TestClient, alice: dict[str, str]) -> None:
    r = client.get("/api/config", headers=alice)
    assert r.status_code == 200, r.text
    assert_no_secret(r.text)
    body = r.json()
    assert set(body["vos"]) == {"lhcb"}
    lhcb = body["vos"]["lhcb"]
    assert set(lhcb["groups"]) == {"lhcb_user", "lhcb_admin"}
    assert set(lhcb["users"]) == {"alice", "bob"}
    assert lhcb["identity_provider"] == {
        "issuer": "https://auth.example.org/realms/lhcb",
        "client_id": "diracx",
        "scopes": ["openid", "profile", "email"],
    }
    assert lhcb["service_accounts"] == {"lhcb-robot": {"group": "lhcb_user"}}
    assert set(lhcb) >= {"quotas", "executors", "queues", "default_group"}
    source = client.app.state.config_source  # type: ignore[attr-defined]
    assert body["revision"] == source.revision
    assert r.headers["etag"] == f'"{source.revision}"'
    assert r.headers["cache-control"] == "private, no-cache"
    assert "authorization" in r.headers["vary"].lower()


def test_a_service_administrator_sees_every_vo(
    client: TestClient, carol_ops: dict[str, str]
) -> None:
    r = client.get("/api/config", headers=carol_ops)
    assert r.status_code == 200, r.text
    assert set(r.json()["vos"]) == {"lhcb", "dteam"}
    assert_no_secret(r.text)
    # the static service token is the local user, a ServiceAdministrator too
    r = client.get("/api/config", headers=bearer("s3cret-test-token"))
    assert set(r.json()["vos"]) == {"lhcb", "dteam"}
    assert_no_secret(r.text)


def test_a_valid_token_is_required(client: TestClient) -> None:
    assert client.get("/api/config").status_code == 401
    assert client.get("/api/config", headers=bearer("a.b.c")).status_code == 401


def test_if_none_match_gets_304_without_body(client: TestClient, alice: dict[str, str]) -> None:
    etag = client.get("/api/config", headers=alice).headers["etag"]
    for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        r = client.get("/api/config", headers={**alice, "If-None-Match": header})
        assert r.status_code == 304, header
        assert r.content == b""
        assert r.headers["etag"] == etag
    r = client.get("/api/config", headers={**alice, "If-None-Match": '"stale"'})
    assert r.status_code == 200
    assert r.json()["vos"]


def wait_for_revision(client: TestClient, headers: dict[str, str], old: str) -> Any:
    deadline = time.monotonic() + 10
    while True:
        r = client.get("/api/config", headers={**headers, "If-None-Match": old})
        if r.status_code == 200:
            return r
        assert r.status_code == 304
        assert time.monotonic() < deadline, "the new configuration was never served"
        time.sleep(0.05)


def test_a_new_version_is_served_without_restart(
    client: TestClient, alice: dict[str, str], config_path: Path
) -> None:
    first = client.get("/api/config", headers=alice)
    write(config_path, config_document(queues=["gpu"]))
    second = wait_for_revision(client, alice, first.headers["etag"])
    assert second.json()["vos"]["lhcb"]["queues"] == ["gpu"]
    assert second.headers["etag"] != first.headers["etag"]

    # a broken version is refused: the last good one is still served, and its ETag
    write(config_path, "vos: [broken\n")
    time.sleep(0.3)  # several reload rounds
    third = client.get("/api/config", headers=alice)
    assert third.status_code == 200
    assert third.headers["etag"] == second.headers["etag"]
    assert third.json()["vos"]["lhcb"]["queues"] == ["gpu"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read the configuration"),
        ("vos: {lhcb: {groups: {}}}\n", r"vos\.lhcb\.default_group \(line 1\): Field required"),
    ],
)
def test_a_configuration_that_cannot_be_read_stops_the_start(
    settings: ServiceSettings, config_path: Path, content: str | None, message: str
) -> None:
    if content is None:
        config_path.unlink()
    else:
        write(config_path, content)
    app = create_app(settings, job_queue=RecordingJobQueue())  # built: read at startup only
    with pytest.raises(ConfigError, match=message), TestClient(app):
        pass
