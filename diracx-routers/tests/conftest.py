"""Fixtures: the real app (lifespan and all) on a real, migrated database.

``db_url`` comes from the ``diracx.testing`` plugin: every test that uses the
app runs on SQLite and on a real PostgreSQL. A module that needs users with real
tokens overrides ``app_config`` (a configuration of VOs); :class:`User` and the
``alice``/``bob``/``carol``/``dave`` fixtures are the users of :func:`quota_vo_config`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from pydantic import SecretStr
from sqlalchemy import Connection, func, select

from diracx.core.config import NORMAL_USER, Config, GroupConfig, QuotaConfig, UserConfig, VOConfig
from diracx.core.derivation import Derivation, DrvInput
from diracx.core.settings import ServiceSettings
from diracx.core.store import LocalStore
from diracx.db.migrate import upgrade
from diracx.db.pipelines import PipelineDB
from diracx.db.schema import metadata
from diracx.routers import create_app
from diracx.routers.queue import RecordingJobQueue
from diracx.testing.auth import TEST_SECRET_KEY, bearer, mint_token, two_vo_config, write_config

from .test_pipelines import command, submission

TOKEN = "s3cret-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

LIMITED = "limited"  # dave's VO: few jobs, little store, process builders on "default"
RUNNING_JOBS = 3
STORE_BYTES = 1000


@pytest.fixture
def app_config() -> Config | None:
    """The service's configuration of VOs: none (only the static token) unless a module
    overrides this fixture; with one, the service also gets a secret key to sign tokens."""
    return None


@pytest.fixture
def settings(tmp_path: Path, db_url: str, app_config: Config | None) -> ServiceSettings:
    """Settings of a fresh service: a migrated database, an empty store."""
    upgrade(db_url)
    with_config: dict[str, Any] = {}
    if app_config is not None:
        with_config = {
            "secret_key": SecretStr(TEST_SECRET_KEY),
            "config": write_config(tmp_path / "config.yaml", app_config),
        }
    return ServiceSettings(
        data_dir=tmp_path / "data",
        db_url=db_url,
        service_token=SecretStr(TOKEN),
        broker_url=None,
        min_client_version="0.0.0",
        **with_config,
    )


@pytest.fixture
def job_queue() -> RecordingJobQueue:
    """Records the job ids the service queues: no worker runs in these tests."""
    return RecordingJobQueue()


@pytest.fixture
def app(settings: ServiceSettings, job_queue: RecordingJobQueue) -> FastAPI:
    return create_app(settings, job_queue=job_queue)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """An authenticated client of the running app (its lifespan is entered)."""
    with TestClient(app, headers=AUTH) as c:
        yield c


@pytest.fixture
def anonymous(client: TestClient) -> TestClient:
    """A client of the same running app, without a token."""
    anon = TestClient(client.app)
    anon.portal = client.portal  # share the running app's event loop
    return anon


@pytest.fixture
def pipeline_db(client: TestClient) -> PipelineDB:
    """The app's own PipelineDB; call it through ``client.portal.call``."""
    db: PipelineDB = client.app.state.pipeline_db  # type: ignore[attr-defined]
    return db


@pytest.fixture
def store(client: TestClient) -> LocalStore:
    s: LocalStore = client.app.state.store  # type: ignore[attr-defined]
    return s


async def _count_rows(db: PipelineDB) -> dict[str, int]:
    def count(conn: Connection) -> dict[str, int]:
        return {
            table.name: conn.execute(select(func.count()).select_from(table)).scalar_one()
            for table in metadata.sorted_tables
        }

    return await db.engines.read(count)


@pytest.fixture
def row_counts(client: TestClient, pipeline_db: PipelineDB) -> Callable[[], dict[str, int]]:
    """Rows per table, to check that a rejected request stored nothing."""
    return lambda: client.portal.call(_count_rows, pipeline_db)  # type: ignore[union-attr]


def quota_vo_config() -> Config:
    """:func:`~diracx.testing.auth.two_vo_config`, and dave alone in the VO ``limited``
    (few running jobs, little store, process builders on the queue "default")."""
    base = two_vo_config()
    limited = VOConfig(
        default_group="limited_user",
        groups={"limited_user": GroupConfig(properties=[NORMAL_USER])},
        users={"dave": UserConfig(groups=["limited_user"])},
        quotas=QuotaConfig(running_jobs=RUNNING_JOBS, store_bytes=STORE_BYTES),
        executors=["process"],
        queues=["default"],
    )
    return base.model_copy(update={"vos": {**base.vos, LIMITED: limited}})


class User:
    """A client of the app that presents one user's access token."""

    def __init__(self, client: TestClient, sub: str, vo: str, group: str) -> None:
        self.client = client
        self.sub = sub
        self.headers = bearer(mint_token(client, sub=sub, vo=vo, group=group))

    def request(self, method: str, url: str, **kwargs: Any) -> Response:
        return self.client.request(method, url, headers=self.headers, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Response:
        return self.request("POST", url, **kwargs)

    def submit(self, *drvs: Derivation) -> dict[str, Any]:
        r = self.post("/api/pipelines", json=submission(*drvs))
        assert r.status_code == 201, r.text
        pipeline: dict[str, Any] = r.json()["pipeline"]
        return pipeline

    def upload(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        r = self.request("PUT", f"/api/blobs/{digest}", content=data)
        assert r.status_code in (200, 201), r.text
        return digest

    def search(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        r = self.post("/api/jobs/search", json=body, params={"per_page": 1000})
        assert r.status_code == 200, r.text
        rows: list[dict[str, Any]] = r.json()
        return rows


# The users of quota_vo_config (a module that uses them overrides ``app_config``)


@pytest.fixture
def alice(client: TestClient) -> User:
    """lhcb, as a VOAdmin."""
    return User(client, "alice", "lhcb", "lhcb_admin")


@pytest.fixture
def alice_user(client: TestClient) -> User:
    """alice again, logged in to lhcb's plain user group: no VOAdmin."""
    return User(client, "alice", "lhcb", "lhcb_user")


@pytest.fixture
def bob(client: TestClient) -> User:
    return User(client, "bob", "lhcb", "lhcb_user")


@pytest.fixture
def carol(client: TestClient) -> User:
    return User(client, "carol", "dteam", "dteam_user")


@pytest.fixture
def dave(client: TestClient) -> User:
    """Alone in the VO ``limited``: 3 running jobs at most."""
    return User(client, "dave", LIMITED, "limited_user")


@pytest.fixture
def chain() -> list[Derivation]:
    """a -> b -> c."""
    a = command("a", "echo", "chain")
    b = command("b", inputs={"a": DrvInput(drv=a.dref)})
    c = command("c", inputs={"b": DrvInput(drv=b.dref)})
    return [a, b, c]
