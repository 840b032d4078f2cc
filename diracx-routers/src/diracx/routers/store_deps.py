"""What the blob and store routes share: the StoreDB, and the caller's VO store quota."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from diracx.core.config import Config
from diracx.db.store_queries import StoreDB
from diracx.routers.auth import AuthorizedUser, CurrentUser
from diracx.routers.dependencies import ConfigDep, db_on_engines


def get_store_db(request: Request) -> StoreDB:
    """The store's queries."""
    return db_on_engines(request, StoreDB)


def store_limit(config: Config, user: AuthorizedUser) -> int | None:
    """The bytes the caller's VO may keep in the store (None: no limit)."""
    vo = config.vos.get(user.vo)
    limit = vo.quotas.store_bytes if vo is not None else None
    return None if limit is None else int(limit)


def get_store_limit(config: ConfigDep, user: CurrentUser) -> int | None:
    return store_limit(config, user)


StoreDBDep = Annotated[StoreDB, Depends(get_store_db)]
StoreLimit = Annotated[int | None, Depends(get_store_limit)]
