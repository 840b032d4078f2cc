"""The DiracX pytest plugin (registered as ``diracx.testing.plugin`` through ``pytest11``).

Fixtures:

``postgresql_server`` (session)
    A real PostgreSQL server (``diracx.testing.postgresql.PostgreSQLServer``),
    started on first use and stopped at the end of the session.
``postgresql_url`` (session)
    ``postgresql+asyncpg://postgres@127.0.0.1:PORT/diracx_test``: a database
    on that server shared by the whole session.
``fresh_postgresql_url`` (function)
    The URL of a new, empty database with a unique name, dropped after the test.
``db_url`` (function, parametrized ``sqlite`` / ``postgresql``)
    A fresh empty database on each backend: a test that uses it runs twice.
    The ``postgresql`` case carries the ``postgresql`` mark.
``data_dir`` (function)
    An empty directory, also set as ``$DIRACX_DATA_DIR`` for the test.
``free_port`` (function)
    A TCP port free on 127.0.0.1 (``diracx.testing.free_port()`` gives more).
``mint_token`` (function)
    ``mint_token(sub=..., vo=..., group=...)``: a real access token of the app of the
    test's ``client`` fixture (``diracx.testing.auth``, which also has a two-VO config).
``engine_factory`` (function)
    A :class:`diracx.testing.engine.EngineFactory` on ``data_dir``: ``start()``
    starts a real embedded engine (again after a ``kill()``, for crash tests);
    every engine it started, and any engine a client started on its data
    directory, is stopped after the test, worker and builds included.
``engine_env`` (module)
    Extra environment variables for those engines (and their workers): ``{}``;
    override it in a test module to give the engines, say, a secret that builds
    must not see.
``embedded_engine`` (function)
    A real embedded engine (``python -m diracx.routers serve --embedded``) on
    ``data_dir`` (``$DIRACX_DATA_DIR``, with ``$DIRACX_URL`` unset, so that
    ``diracx.api.connect()`` uses it): an :class:`~diracx.testing.engine.EngineProcess`.
``module_engine`` (module)
    The same, shared by the tests of a module, on a data directory of its own
    that is ``$DIRACX_DATA_DIR`` while the module's tests run. Tests that share
    it should not depend on what the others built (give their stages unique
    names or configs).

``distributed_service`` (function)
    A :class:`diracx.testing.distributed.DistributedService`: a fresh PostgreSQL
    database, Redis, moto's S3 server (or a shared store directory when this DiracX has
    no S3 store), the API server and three workers, each a real process on loopback;
    ``$DIRACX_URL``/``$DIRACX_TOKEN`` point the client at it during the test. The
    scheduler runs too, with recovery in seconds (``FAST_RECOVERY``). Its methods
    kill (-9) and restart workers and the API server. Everything is stopped after
    the test, and no process may be left.
``module_distributed_service`` (module)
    The same, shared by a module's tests.
``module_service`` (module, parametrized ``embedded`` / ``distributed``)
    A DiracX shared by a module's tests, and the client pointed at it: the embedded
    engine (``module_engine``), then the distributed service. End-to-end tests that
    use it run on both; the ``distributed`` case carries the ``postgresql`` and
    ``distributed`` marks.

``moto_server`` (session)
    moto's S3 server (``diracx.testing.s3.MotoServer``) on a free loopback port,
    in a process of its own, stopped at the end of the session.
``s3_store_url`` (function)
    A fresh bucket on it, as a dict of ``DIRACX_*`` settings (``DIRACX_STORE_URL``,
    ``DIRACX_S3_ENDPOINT_URL``, ``DIRACX_S3_REGION``, ``DIRACX_S3_ACCESS_KEY_ID``,
    ``DIRACX_S3_SECRET_ACCESS_KEY``) to give a service, an engine or a worker.

``redis_server`` (session)
    A real Redis server (``diracx.testing.redis.RedisServer``, no persistence) on a
    free loopback port, stopped at the end of the session. Without ``redis-server``
    the tests that use it are skipped, except under ``CI=true``, where they fail.
``redis_url`` (session)
    ``redis://127.0.0.1:PORT/0`` on that server, shared by the session.
``fresh_redis_url`` (function)
    ``redis://127.0.0.1:PORT/N``: a database of the server (1-15, in turn) emptied
    for the test, so that no message of an earlier test reaches its workers.

``busybox_layout`` (session)
    An OCI image layout directory with a busybox image (``diracx.testing.oci``).
``oci_registry``, ``oci_registry_basic``, ``oci_registry_bearer`` (session)
    Debian's ``docker-registry`` on loopback: anonymous, basic auth, bearer-token
    challenge (:class:`diracx.testing.oci.OCIRegistry`: ``.ref(name)``, ``.client()``,
    ``.push_layout(layout, name)``). Skipped when ``docker-registry`` or busybox is
    missing, except under ``CI=true``, where they fail.

``oidc_provider`` (function)
    A real OpenID Connect provider on loopback (:class:`diracx.testing.oidc.OIDCProvider`:
    ``.issuer``, ``.register_client(...)``, ``.login_as(user)``, ``.decline()``), users
    alice, bob and carol. ``browser`` (function): a :class:`diracx.testing.browser.Browser`
    that follows redirects and submits forms, to play the user of ``dirac login``.

Every test that needs PostgreSQL is marked ``postgresql``, so
``pytest -m "not postgresql"`` runs without starting a server; ``-m "not distributed"``
skips the distributed service.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from diracx.testing.auth import mint_token_fixture  # noqa: F401 - the mint_token fixture
from diracx.testing.browser import browser  # noqa: F401 - fixture, found here by pytest
from diracx.testing.distributed import (
    FAST_RECOVERY,
    DistributedService,
    has_s3_store,
    start_distributed,
)
from diracx.testing.engine import EngineFactory, EngineProcess
from diracx.testing.oci import (  # noqa: F401 - fixtures, found here by pytest
    busybox_layout,
    oci_registry,
    oci_registry_basic,
    oci_registry_bearer,
)
from diracx.testing.oidc import oidc_provider  # noqa: F401 - fixture, found here by pytest
from diracx.testing.postgresql import PostgreSQLServer, PostgreSQLUnavailableError, start_postgresql
from diracx.testing.redis import RedisServer, RedisUnavailableError, start_redis
from diracx.testing.s3 import MotoServer, S3UnavailableError, start_moto
from diracx.testing.s3 import bucket as _s3_bucket
from diracx.testing.utils import free_port as _free_port

POSTGRESQL_FIXTURES = frozenset({"postgresql_server", "postgresql_url", "fresh_postgresql_url"})
DISTRIBUTED_FIXTURES = frozenset({"distributed_service", "module_distributed_service"})
SESSION_DATABASE = "diracx_test"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "postgresql: the test uses a real PostgreSQL server (deselect with -m 'not postgresql')",
    )
    config.addinivalue_line(
        "markers",
        "distributed: the test runs on the distributed service (PostgreSQL, Redis, S3, workers)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a PostgreSQL fixture, before ``-m`` deselects."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if POSTGRESQL_FIXTURES & names:
            item.add_marker(pytest.mark.postgresql)
        if DISTRIBUTED_FIXTURES & names:  # their database is on the PostgreSQL server
            item.add_marker(pytest.mark.distributed)
            item.add_marker(pytest.mark.postgresql)


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgreSQLServer]:
    """A real PostgreSQL server on 127.0.0.1 for the whole session."""
    try:
        server = start_postgresql()
    except PostgreSQLUnavailableError as exc:
        pytest.fail(f"cannot start the test PostgreSQL server: {exc}", pytrace=False)
    with server:
        yield server


@pytest.fixture(scope="session")
def postgresql_url(postgresql_server: PostgreSQLServer) -> str:
    """``postgresql+asyncpg://postgres@127.0.0.1:PORT/diracx_test``, shared by the session."""
    postgresql_server.create_database(SESSION_DATABASE)
    return postgresql_server.url(SESSION_DATABASE)


@pytest.fixture
def fresh_postgresql_url(postgresql_server: PostgreSQLServer) -> Iterator[str]:
    """A new empty database on the session's server, dropped after the test."""
    name = postgresql_server.create_database()
    try:
        yield postgresql_server.url(name)
    finally:
        postgresql_server.drop_database(name)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh empty database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'diracx.db'}"
    url: str = request.getfixturevalue("fresh_postgresql_url")
    return url


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data directory, set as ``$DIRACX_DATA_DIR`` for the test."""
    path = tmp_path / "diracx-data"
    path.mkdir()
    monkeypatch.setenv("DIRACX_DATA_DIR", str(path))
    return path


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    """moto's S3 server on 127.0.0.1 (a process of its own) for the whole session."""
    try:
        server = start_moto()
    except S3UnavailableError as exc:
        pytest.fail(f"cannot start the test S3 server: {exc}", pytrace=False)
    with server:
        yield server


@pytest.fixture
def s3_store_url(moto_server: MotoServer) -> Iterator[dict[str, str]]:
    """A fresh bucket on the session's moto server, as the ``DIRACX_*`` settings that
    make a service or worker use it (``DIRACX_STORE_URL``, ``DIRACX_S3_ENDPOINT_URL``,
    the region and keys); the bucket is emptied and removed after the test."""
    with _s3_bucket(moto_server) as name:
        yield moto_server.settings_env(name)


@pytest.fixture(name="free_port")
def free_port_fixture() -> int:
    """A TCP port that is free on 127.0.0.1."""
    return _free_port()


# Settings of the test process that would send a client elsewhere than the test engine.
CLIENT_VARIABLES = ("DIRACX_URL", "DIRACX_TOKEN")


@pytest.fixture(scope="module")
def engine_env() -> dict[str, str]:
    """Extra environment of the test engines; override it in a module to add some."""
    return {}


@pytest.fixture
def engine_factory(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, engine_env: dict[str, str]
) -> Iterator[EngineFactory]:
    """Starts real embedded engines on ``data_dir``; stops them all after the test."""
    for name in CLIENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    factory = EngineFactory(data_dir, engine_env)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture
def embedded_engine(engine_factory: EngineFactory) -> EngineProcess:
    """A real embedded engine on ``data_dir`` (``$DIRACX_DATA_DIR``) for this test."""
    return engine_factory.start()


@pytest.fixture(scope="module")
def module_engine(
    tmp_path_factory: pytest.TempPathFactory, engine_env: dict[str, str]
) -> Iterator[EngineProcess]:
    """A real embedded engine shared by a module's tests, ``$DIRACX_DATA_DIR`` meanwhile."""
    data_dir = tmp_path_factory.mktemp("diracx-engine") / "data"
    data_dir.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIRACX_DATA_DIR", str(data_dir))
        for name in CLIENT_VARIABLES:
            mp.delenv(name, raising=False)
        factory = EngineFactory(data_dir, engine_env)
        try:
            yield factory.start()
        finally:
            factory.close()


@contextlib.contextmanager
def _distributed(
    request: pytest.FixtureRequest, base: Path, engine_env: dict[str, str]
) -> Iterator[DistributedService]:
    """A distributed service on the session's PostgreSQL, Redis and S3 servers (a fresh
    database, Redis database and bucket), the client pointed at it meanwhile."""
    s3 = request.getfixturevalue("moto_server") if has_s3_store() else False
    with (
        pytest.MonkeyPatch.context() as mp,
        start_distributed(
            base / "service",
            postgresql=request.getfixturevalue("postgresql_server"),
            redis=request.getfixturevalue("redis_server"),
            s3=s3,
            extra_env={**FAST_RECOVERY, **engine_env},
        ) as service,
    ):
        client_dir = base / "client"
        client_dir.mkdir(parents=True, exist_ok=True)
        mp.setenv("DIRACX_DATA_DIR", str(client_dir))
        for name, value in service.env.items():
            mp.setenv(name, value)
        yield service


@pytest.fixture
def distributed_service(
    request: pytest.FixtureRequest, tmp_path: Path, engine_env: dict[str, str]
) -> Iterator[DistributedService]:
    """PostgreSQL, Redis, S3, the API server and three workers, as processes, for this test."""
    with _distributed(request, tmp_path, engine_env) as service:
        yield service


@pytest.fixture(scope="module")
def module_distributed_service(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    engine_env: dict[str, str],
) -> Iterator[DistributedService]:
    """The distributed service, shared by a module's tests."""
    with _distributed(request, tmp_path_factory.mktemp("diracx-distributed"), engine_env) as svc:
        yield svc


@pytest.fixture(
    scope="module",
    params=[
        "embedded",
        pytest.param("distributed", marks=[pytest.mark.postgresql, pytest.mark.distributed]),
    ],
)
def module_service(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    engine_env: dict[str, str],
) -> Iterator[EngineProcess | DistributedService]:
    """The embedded engine, then the distributed service, shared by a module's tests.

    Each is stopped before the other starts (pytest runs the tests grouped by param).
    """
    base = tmp_path_factory.mktemp(f"diracx-{request.param}")
    if request.param == "distributed":
        with _distributed(request, base, engine_env) as service:
            yield service
        return
    data_dir = base / "data"
    data_dir.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIRACX_DATA_DIR", str(data_dir))
        for name in CLIENT_VARIABLES:
            mp.delenv(name, raising=False)
        factory = EngineFactory(data_dir, engine_env)
        try:
            yield factory.start()
        finally:
            factory.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """A real Redis server on 127.0.0.1 for the whole session."""
    if shutil.which("redis-server") is None:
        reason = "redis-server is not installed (apt-get install redis-server, or `make test`)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}: CI must run the Redis tests", pytrace=False)
        pytest.skip(reason)
    try:
        server = start_redis()
    except RedisUnavailableError as exc:
        pytest.fail(f"cannot start the test Redis server: {exc}", pytrace=False)
    with server:
        yield server


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    """``redis://127.0.0.1:PORT/0``, shared by the session."""
    return redis_server.url(0)


_redis_databases = itertools.count()


@pytest.fixture
def fresh_redis_url(redis_server: RedisServer) -> str:
    """A database of the session's Redis server of its own, emptied for this test."""
    db = 1 + next(_redis_databases) % 15
    redis_server.flush(db)
    return redis_server.url(db)
