"""``LollygagDB``: the lollygags of each VO, in a table of gubbins's own.

Declared under ``diracx.dbs``: the service builds it on its database engines when it starts
and calls :meth:`LollygagDB.open`; routes get it with ``db_dependency(LollygagDB)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    MetaData,
    String,
    Table,
    inspect,
    select,
)
from sqlalchemy.exc import DBAPIError

from diracx.db.engine import Engines
from diracx.db.sql import insert_ignore

metadata = MetaData()

lollygags = Table(
    "gubbins_lollygags",
    metadata,
    Column("vo", String(64), primary_key=True),
    Column("name", String(64), primary_key=True),
    Column("owner", String(255), nullable=False),
    Column("created", DateTime(timezone=True), nullable=False),
)


@dataclass(frozen=True)
class LollygagRow:
    name: str
    owner: str
    created: datetime


def _row(name: str, owner: str, created: datetime) -> LollygagRow:
    if created.tzinfo is None:  # SQLite keeps no time zone: they are all UTC
        created = created.replace(tzinfo=UTC)
    return LollygagRow(name=name, owner=owner, created=created)


class LollygagDB:
    """Lollygags by VO: a user only ever reads and adds those of their own VO."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def open(self) -> None:
        """Create gubbins's table if it is missing.

        DiracX's own tables come from its migrations (``dirac db upgrade``); a real extension
        ships migrations of its own the same way. One table is enough for an example.
        """

        def create(conn: Connection) -> None:
            metadata.create_all(conn, checkfirst=True)

        try:
            await self.engines.write(create)
        except DBAPIError:
            # another replica created it at the same moment: fine if it is there now
            if not await self.engines.read(lambda c: inspect(c).has_table(lollygags.name)):
                raise

    async def add(self, vo: str, name: str, owner: str) -> tuple[LollygagRow, bool]:
        """Add *name* to *vo* (once: a second add returns the first one); (row, added)."""
        dialect_name = self.engines.dialect_name

        def tx(conn: Connection) -> tuple[LollygagRow, bool]:
            stmt = insert_ignore(dialect_name, lollygags)
            values = {"vo": vo, "name": name, "owner": owner, "created": datetime.now(UTC)}
            added = conn.execute(stmt, values).rowcount == 1
            row = conn.execute(
                select(lollygags.c.name, lollygags.c.owner, lollygags.c.created).where(
                    lollygags.c.vo == vo, lollygags.c.name == name
                )
            ).one()
            return _row(*row), added

        return await self.engines.write(tx)

    async def list(self, vo: str) -> list[LollygagRow]:
        def tx(conn: Connection) -> list[LollygagRow]:
            query = (
                select(lollygags.c.name, lollygags.c.owner, lollygags.c.created)
                .where(lollygags.c.vo == vo)
                .order_by(lollygags.c.name)
            )
            return [_row(*r) for r in conn.execute(query)]

        return await self.engines.read(tx)
