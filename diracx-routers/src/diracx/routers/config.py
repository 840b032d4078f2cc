"""``GET /api/config``: the configuration in force, as the caller may see it.

A user sees their own VO (groups, users, quotas, executors, queues, identity provider, the
VO's service accounts); a ServiceAdministrator sees every VO. Password hashes, secret
hashes and client secrets are never served (:meth:`diracx.core.config.Config.view`).

The ETag is the configuration's revision: a client that sends it back in
``If-None-Match`` gets 304 with no body until the configuration changes. What a response
holds depends on the caller, so caches keep it per ``Authorization`` and revalidate it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request, Response, status

from diracx.core.config import SERVICE_ADMIN, ConfigView
from diracx.core.config_source import ConfigSnapshot
from diracx.routers.auth import AuthenticatedAccess, CurrentUser
from diracx.routers.routing import DiracxRouter

router = DiracxRouter(policy=AuthenticatedAccess(), prefix="/config", tags=["config"])

CACHE_CONTROL = "private, no-cache"


class ServedConfig(ConfigView):
    """The VOs the caller may see, and the revision of the configuration they come from."""

    revision: str


def get_config_snapshot(request: Request) -> ConfigSnapshot:
    """The version in force and its revision, read together."""
    snapshot: ConfigSnapshot = request.app.state.config_source.snapshot()
    return snapshot


ConfigSnapshotDep = Annotated[ConfigSnapshot, Depends(get_config_snapshot)]


def etag_of(revision: str) -> str:
    return f'"{revision}"'


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names *etag* (weak or strong), or is ``*``."""
    if not if_none_match:
        return False
    for candidate in if_none_match.split(","):
        candidate = candidate.strip().removeprefix("W/")
        if candidate in ("*", etag):
            return True
    return False


@router.get(
    "",
    response_model=ServedConfig,
    responses={
        200: {"headers": {"ETag": {"description": "The configuration's revision, quoted"}}},
        304: {"description": "Not modified: the If-None-Match revision is still in force"},
    },
)
async def get_config(
    snapshot: ConfigSnapshotDep, user: CurrentUser, request: Request, response: Response
) -> ServedConfig | Response:
    """The configuration as the caller may see it (their VO; every VO for a
    ServiceAdministrator). Send the ETag back in If-None-Match to get 304 while it holds."""
    etag = etag_of(snapshot.revision)
    headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Vary": "Authorization"}
    if matches(request.headers.get("if-none-match"), etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    response.headers.update(headers)
    vos = None if SERVICE_ADMIN in user.properties else [user.vo]
    view = snapshot.config.view(vos)
    return ServedConfig(revision=snapshot.revision, vos=view.vos)
