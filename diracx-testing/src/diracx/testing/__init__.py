"""DiracX test helpers; the fixtures are in the pytest plugin ``diracx.testing.plugin``."""

from __future__ import annotations

from diracx.testing.postgresql import PostgreSQLServer, PostgreSQLUnavailableError, start_postgresql
from diracx.testing.utils import free_port

__all__ = ["PostgreSQLServer", "PostgreSQLUnavailableError", "free_port", "start_postgresql"]
