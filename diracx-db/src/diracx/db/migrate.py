"""Apply the Alembic migrations (``dirac db upgrade`` and the embedded engine's start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Alembic runs synchronously: use the sync driver of the same database.
    sync_url = make_url(url)
    if sync_url.drivername == "sqlite+aiosqlite":
        sync_url = sync_url.set(drivername="sqlite")
    elif sync_url.drivername == "postgresql+asyncpg":
        sync_url = sync_url.set(drivername="postgresql+psycopg")
    cfg.attributes["sqlalchemy_url"] = sync_url
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database at *url* to *revision* (creating it from nothing if needed)."""
    command.upgrade(alembic_config(url), revision)
