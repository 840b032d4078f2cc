"""gubbins's access policies (entry points ``diracx.access_policies``).

An entry point named after a DiracX service replaces that service's policy on all its
routes when the app is built. This module does not use ``from __future__ import
annotations``: FastAPI reads the policy's ``__call__`` signature.
"""

from fastapi import HTTPException, status

from diracx.core.config import NORMAL_USER, SERVICE_ADMIN, VO_ADMIN
from diracx.routers.auth import AccessPolicy, AuthorizedUser, CurrentUser

CONFIG_READERS = frozenset({NORMAL_USER, VO_ADMIN, SERVICE_ADMIN})


class ConfigReaderAccess(AccessPolicy):
    """``GET /api/config`` for people, not robots: gubbins shows its user lists only to
    holders of NormalUser, VOAdmin or ServiceAdministrator (DiracX: any valid token)."""

    async def __call__(self, user: CurrentUser) -> AuthorizedUser:
        if not CONFIG_READERS & set(user.properties):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=(
                    f"user {user.sub!r} may not read the configuration: it takes one of "
                    f"{', '.join(sorted(CONFIG_READERS))}"
                ),
            )
        return user
