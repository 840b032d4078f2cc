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

Every test that needs PostgreSQL is marked ``postgresql``, so
``pytest -m "not postgresql"`` runs without starting a server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from diracx.testing.engine import EngineFactory, EngineProcess
from diracx.testing.postgresql import PostgreSQLServer, PostgreSQLUnavailableError, start_postgresql
from diracx.testing.utils import free_port as _free_port

POSTGRESQL_FIXTURES = frozenset({"postgresql_server", "postgresql_url", "fresh_postgresql_url"})
SESSION_DATABASE = "diracx_test"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "postgresql: the test uses a real PostgreSQL server (deselect with -m 'not postgresql')",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that uses a PostgreSQL fixture, before ``-m`` deselects."""
    for item in items:
        if POSTGRESQL_FIXTURES & set(getattr(item, "fixturenames", ())):
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
