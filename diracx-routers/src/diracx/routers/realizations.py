"""Read realizations: what was built, from what, with which output (within the VO)."""

from __future__ import annotations

from diracx.core.exceptions import ObjectNotFoundError
from diracx.core.models import RealizationInfo
from diracx.routers.auth import CurrentUser, NormalUserAccess
from diracx.routers.errors import ErrorResponse
from diracx.routers.params import DRefPath, RRefPath
from diracx.routers.routing import DiracxRouter
from diracx.routers.store import router as store_router
from diracx.routers.store_deps import StoreDBDep
from diracx.routers.store_gc import router as store_gc_router

router = DiracxRouter(policy=NormalUserAccess, tags=["realizations"])


@router.get(
    "/realizations/{rref}",
    responses={404: {"model": ErrorResponse, "description": "No such realization"}},
)
async def get_realization(rref: RRefPath, user: CurrentUser, sdb: StoreDBDep) -> RealizationInfo:
    """One realization (of the caller's VO: another VO's does not exist for it)."""
    info = (await sdb.realization_infos(user.vo, [rref])).get(rref)
    if info is None:
        raise ObjectNotFoundError(f"realization {rref} does not exist")
    return info


@router.get("/derivations/{dref}/realizations")
async def list_realizations(
    dref: DRefPath, user: CurrentUser, sdb: StoreDBDep
) -> list[RealizationInfo]:
    """The caller's VO's realizations of a derivation, oldest first (empty if it never
    built it)."""
    return await sdb.realizations_of(user.vo, dref)


# The store routes (/api/store/...) are served with the realizations: a service of
# their own would need a new entry point, hence a reinstall of diracx-routers.
router.include_router(store_router)
router.include_router(store_gc_router)  # pins and garbage collection (/api/store/...)
