"""Fixtures: the real app (lifespan and all) on a real, migrated database.

``db_url`` comes from the ``diracx.testing`` plugin: every test that uses the
app runs on SQLite and on a real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import Connection, func, select

from diracx.core.settings import ServiceSettings
from diracx.core.store import LocalStore
from diracx.db.migrate import upgrade
from diracx.db.pipelines import PipelineDB
from diracx.db.schema import metadata
from diracx.routers import create_app
from diracx.routers.queue import RecordingJobQueue

TOKEN = "s3cret-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> ServiceSettings:
    """Settings of a fresh service: a migrated database, an empty store."""
    upgrade(db_url)
    return ServiceSettings(
        data_dir=tmp_path / "data",
        db_url=db_url,
        service_token=SecretStr(TOKEN),
        broker_url=None,
        min_client_version="0.0.0",
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
