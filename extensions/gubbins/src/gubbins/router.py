"""``/api/lollygag``: a service of the extension (entry point ``diracx.services``).

Like every DiracX service it is a ``DiracxRouter`` with an access policy, and it keeps
each VO's objects to that VO.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Path
from pydantic import BaseModel

from diracx.routers.auth import CurrentUser, NormalUserAccess
from diracx.routers.dependencies import ConfigDep
from diracx.routers.extensions import db_dependency
from diracx.routers.routing import DiracxRouter
from gubbins.db import LollygagDB, LollygagRow

router = DiracxRouter(policy=NormalUserAccess, prefix="/lollygag", tags=["lollygag"])

LollygagDBDep = Annotated[LollygagDB, Depends(db_dependency(LollygagDB))]
LollygagName = Annotated[
    str,
    Path(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$",
        description="1-64 letters, digits, '.', '_' or '-'",
    ),
]


class Lollygag(BaseModel):
    name: str
    owner: str
    created: datetime


class LollygagAdded(Lollygag):
    added: bool  # False: it was there already (adding is idempotent)


class LollygagList(BaseModel):
    vo: str
    default_group: str | None  # from the configuration in force (None: the VO left it)
    lollygags: list[Lollygag]


def _model(row: LollygagRow) -> Lollygag:
    return Lollygag(name=row.name, owner=row.owner, created=row.created)


@router.get("")
async def list_lollygags(user: CurrentUser, db: LollygagDBDep, config: ConfigDep) -> LollygagList:
    """The lollygags of your VO."""
    vo = config.vos.get(user.vo)
    rows = await db.list(user.vo)
    return LollygagList(
        vo=user.vo,
        default_group=vo.default_group if vo else None,
        lollygags=[_model(r) for r in rows],
    )


@router.post("/{name}")
async def add_lollygag(name: LollygagName, user: CurrentUser, db: LollygagDBDep) -> LollygagAdded:
    """Add a lollygag to your VO (again: nothing changes, the first one is returned)."""
    row, added = await db.add(user.vo, name, user.sub)
    return LollygagAdded(**_model(row).model_dump(), added=added)
