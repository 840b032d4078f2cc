"""DiracX database layer: SQLAlchemy schemas, Alembic migrations and state changes."""
