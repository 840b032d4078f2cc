"""Schemathesis: every operation of the OpenAPI spec, fuzzed against the real service.

The app (``create_app``, lifespan and all, on a migrated SQLite file, then a real
PostgreSQL database) is served by uvicorn on a loopback port, and Schemathesis sends
each operation generated requests, valid and invalid (form bodies of the OAuth routes
included), with a real access token (a JWT of the app's own ``TokenService``, from
``diracx.testing.auth.issue_test_token``). Every response must be no 5xx, have a status
code and a content type the spec declares, and a body that matches the declared schema.

Bounded so that CI stays fast and reproducible: a fixed seed, derandomized Hypothesis,
at most ``MAX_EXAMPLES`` fuzzed requests per operation (plus the deterministic coverage
phase), no example database carried between runs. A deeper run by hand:
``DIRACX_SCHEMATHESIS_EXAMPLES=500 pytest diracx-routers/tests/test_schemathesis.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import httpx
import hypothesis
import pytest
import schemathesis
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from diracx.core.derivation import Derivation
from diracx.core.settings import ServiceSettings
from diracx.db.migrate import upgrade
from diracx.routers import create_app
from diracx.routers.queue import RecordingJobQueue
from diracx.testing.auth import TEST_SECRET_KEY, issue_test_token, write_config
from diracx.testing.postgresql import PostgreSQLServer

MAX_EXAMPLES = int(os.environ.get("DIRACX_SCHEMATHESIS_EXAMPLES", "25"))
SEED = 6
# the token's user: every property (NormalUser, VOAdmin, ServiceAdministrator), so that
# every route gets past its policy
USER = {"sub": "carol", "vo": "dteam", "group": "dteam_ops"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def service_settings(data_dir: Path, db_url: str, config: str | None = None) -> ServiceSettings:
    return ServiceSettings(
        data_dir=data_dir,
        db_url=db_url,
        config=config,  # two VOs, three users (diracx.testing.auth.two_vo_config)
        secret_key=SecretStr(TEST_SECRET_KEY),  # seals the token signing keys
        broker_url=None,
        min_client_version="0.0.0",
    )


def load_spec() -> schemathesis.BaseSchema:
    """The app's spec (building the app touches neither the database nor the data dir)."""
    unused = Path(tempfile.gettempdir()) / "diracx-schemathesis-unused"
    app = create_app(service_settings(unused, "sqlite+aiosqlite://"), job_queue=RecordingJobQueue())
    config = schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "request-timeout": 30,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
                # the token is sent by the test, not generated
                "with-security-parameters": False,
            },
            "phases": {"stateful": {"enabled": False}},
        }
    )
    return schemathesis.openapi.from_dict(app.openapi(), config=config)


schema = load_spec()


@dataclass(frozen=True)
class Served:
    base_url: str
    loop: asyncio.AbstractEventLoop  # the app's: run its coroutines there


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[Served]:
    """Serve *app* with uvicorn on a loopback port (a thread with its own event loop)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False)
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(server.serve(sockets=[sock]),), daemon=True
    )
    thread.start()
    try:
        for _ in range(1000):
            if server.started or not thread.is_alive():
                break
            threading.Event().wait(0.01)
        assert server.started, "uvicorn did not start"
        yield Served(f"http://127.0.0.1:{port}", loop)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        loop.close()
        sock.close()


def seed_data(base_url: str, headers: dict[str, str]) -> None:
    """One pipeline, so that pipeline 1 and job 1 exist: more than 404s on the id routes."""
    stage = Derivation(name="stage", builder={"executor": "process", "argv": ["true"]})
    body = {"derivations": {stage.dref: stage.model_dump(mode="json")}, "targets": [stage.dref]}
    r = httpx.post(f"{base_url}/api/pipelines", json=body, headers=headers)
    assert r.status_code == 201, r.text


@dataclass(frozen=True)
class Service:
    base_url: str
    headers: dict[str, str]


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """The real app on a fresh migrated database, served on loopback, with a token."""
    tmp = tmp_path_factory.mktemp(f"schemathesis-{request.param}")
    pg: PostgreSQLServer | None = None
    if request.param == "sqlite":
        db_url = f"sqlite+aiosqlite:///{tmp / 'diracx.db'}"
    else:
        pg = request.getfixturevalue("postgresql_server")
        database = pg.create_database()
        db_url = pg.url(database)
    try:
        upgrade(db_url)
        config = write_config(tmp / "config.yaml")
        settings = service_settings(tmp / "data", db_url, config)
        app = create_app(settings, job_queue=RecordingJobQueue())
        with serve(app) as served:
            minted: Future[str] = asyncio.run_coroutine_threadsafe(
                issue_test_token(app, **USER), served.loop
            )
            headers = {"Authorization": f"Bearer {minted.result(timeout=30)}"}
            seed_data(served.base_url, headers)
            yield Service(served.base_url, headers)
    finally:
        if pg is not None:
            pg.drop_database(database)


@schema.parametrize()
@hypothesis.settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(hypothesis.HealthCheck),
)
def test_api_conforms_to_its_spec(case: schemathesis.Case, service: Service) -> None:
    case.call_and_validate(base_url=service.base_url, headers=service.headers, checks=CHECKS)
