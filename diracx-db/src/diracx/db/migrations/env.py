"""Alembic environment: runs the migrations against the URL given by diracx.db.migrate."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from diracx.db.schema import metadata

config = context.config
engine = create_engine(config.attributes["sqlalchemy_url"], poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
