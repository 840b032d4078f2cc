"""Settings, read from ``DIRACX_*`` environment variables (pydantic-settings).

The same code runs the embedded default and a scaled-out deployment: only
these settings differ.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """Where the embedded engine keeps its state: ``$XDG_DATA_HOME/diracx``."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "diracx"


class ServiceSettings(BaseSettings):
    """Settings shared by the service and the workers."""

    model_config = SettingsConfigDict(env_prefix="DIRACX_", extra="ignore")

    data_dir: Path = Field(default_factory=default_data_dir)
    # SQLAlchemy URL; the default is a SQLite file in data_dir
    db_url: str | None = None
    # a local directory; the default is data_dir/store
    store_path: Path | None = None
    # Celery broker; the default is a transport that needs no server (files in data_dir)
    broker_url: str | None = None
    # The bearer token the service accepts for its local user (the embedded engine mints it)
    service_token: SecretStr | None = None
    min_client_version: str = "0.0.0"
    # Builds run at once per worker process. Short builds mostly wait on process
    # start-up and I/O, so the default oversubscribes the cores; lower it for heavy builds.
    worker_slots: int = Field(default_factory=lambda: 4 * (os.cpu_count() or 1), ge=1)
    # The embedded engine stops itself after this many idle seconds
    engine_idle_timeout: float = 600.0

    def resolved_db_url(self) -> str:
        return self.db_url or f"sqlite+aiosqlite:///{self.data_dir / 'diracx.db'}"

    def resolved_store_path(self) -> Path:
        return self.store_path or self.data_dir / "store"

    def resolved_broker_url(self) -> str:
        return self.broker_url or "filesystem://"

    @property
    def broker_dir(self) -> Path:
        return self.data_dir / "broker"

    @property
    def scratch_dir(self) -> Path:
        # inside data_dir, hence on the store's filesystem: outputs are renamed into the store
        return self.data_dir / "scratch"


class ClientSettings(BaseSettings):
    """Settings of the Python API and the CLI."""

    model_config = SettingsConfigDict(env_prefix="DIRACX_", extra="ignore")

    url: str | None = None  # DIRACX_URL: the service to use; unset means the embedded engine
    token: SecretStr | None = None  # DIRACX_TOKEN: bearer token for DIRACX_URL
    data_dir: Path = Field(default_factory=default_data_dir)
