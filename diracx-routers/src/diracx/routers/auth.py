"""Who is calling, and who may call what: the authentication seam and access policies.

A caller presents ``Authorization: Bearer <token>``, either:

- an access token (a JWT) that DiracX issued itself (``diracx.routers.tokens``: the
  token endpoint, the device flow, client credentials), verified without a database
  query; it carries the user's VO, group and properties; or
- the service's static token (``DIRACX_SERVICE_TOKEN``, minted by the embedded engine),
  which stands for the local user (``LOCAL_USER``).

Routes declare who may call them with an ``AccessPolicy`` (on their ``DiracxRouter``).

This module deliberately does not use ``from __future__ import annotations``:
policies are callable instances, and FastAPI reads their ``__call__`` signature.
"""

import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

from diracx.core import config
from diracx.core.settings import ServiceSettings
from diracx.routers.dependencies import get_settings
from diracx.routers.errors import ErrorResponse

if TYPE_CHECKING:
    from diracx.routers.tokens import TokenService

NORMAL_USER = config.NORMAL_USER

bearer_scheme = HTTPBearer(
    auto_error=False,
    description="An access token of this service (a JWT: `dirac login`, or the token "
    "endpoint), or the static service token (the embedded engine mints it for its local user).",
)


class AuthorizedUser(BaseModel):
    """The identity a request acts for: who, in which VO and group, holding which properties.

    Every route that reads or acts on pipelines, jobs, realizations, blobs or pins filters
    by ``vo``: a user never sees another VO's objects, even by guessing their ids.
    """

    sub: str
    preferred_username: str
    vo: str
    group: str
    properties: list[str]
    # the login this token belongs to (revoking it refuses the access token too);
    # None for the embedded engine's static token
    family_id: str | None = None


LOCAL_USER = AuthorizedUser(
    sub=config.LOCAL_USER,
    preferred_username=config.LOCAL_USER,
    vo=config.LOCAL_VO,
    group=config.LOCAL_GROUP,
    properties=config.local_config().properties(config.LOCAL_VO, config.LOCAL_GROUP),
)


def unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=message, headers={"WWW-Authenticate": "Bearer"}
    )


def authenticate(token: str, settings: ServiceSettings) -> AuthorizedUser:
    """The local user, if *token* is the static service token; raises 401 if it is not."""
    expected = settings.service_token
    if expected is None:
        raise unauthorized(
            "this service accepts no token: it was started without DIRACX_SERVICE_TOKEN"
        )
    if not secrets.compare_digest(token.encode(), expected.get_secret_value().encode()):
        raise unauthorized("invalid bearer token: check DIRACX_TOKEN or log in again")
    return LOCAL_USER


async def verify_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    settings: Annotated[ServiceSettings, Depends(get_settings)],
) -> AuthorizedUser:
    """The caller's identity, from the ``Authorization: Bearer`` header: an access token
    (JWT) of this service, or the static service token. 401 with the reason otherwise."""
    if credentials is None:
        raise unauthorized("authentication required: send 'Authorization: Bearer <token>'")
    token = credentials.credentials
    if token.count(".") == 2:  # a JWT (the static token is one base64url word)
        service: TokenService | None = getattr(request.app.state, "token_service", None)
        if service is None:
            raise unauthorized("this service is not ready to verify access tokens")
        return await service.verify(token)
    return authenticate(token, settings)


CurrentUser = Annotated[AuthorizedUser, Depends(verify_token)]


class AccessPolicy:
    """Who may call a route. An instance is a FastAPI dependency; ``DiracxRouter`` applies
    its policy to every route it holds, and the app refuses routes without one."""

    public: ClassVar[bool] = False
    # Subclasses define ``async def __call__(self, ...)`` with the dependencies they need.
    __call__: Callable[..., Awaitable[object]]

    def describe(self) -> str:
        return type(self).__name__

    def responses(self) -> dict[int | str, dict[str, Any]]:
        """The error responses this policy adds to the OpenAPI of its routes."""
        return {
            401: {"model": ErrorResponse, "description": "Missing or invalid bearer token"},
            403: {"model": ErrorResponse, "description": "The caller may not use this route"},
        }


class PublicAccess(AccessPolicy):
    """Anyone, without a token: health probes and discovery metadata only."""

    public: ClassVar[bool] = True

    async def __call__(self) -> None:
        return None

    def responses(self) -> dict[int | str, dict[str, Any]]:
        return {}


class AuthenticatedAccess(AccessPolicy):
    """Any valid token, whatever its properties (``GET /api/auth/userinfo``)."""

    async def __call__(self, user: CurrentUser) -> AuthorizedUser:
        return user


class PropertyAccess(AccessPolicy):
    """A valid token whose user holds every one of *properties*."""

    def __init__(self, *properties: str) -> None:
        self.properties = frozenset(properties)

    def describe(self) -> str:
        return f"PropertyAccess({', '.join(sorted(self.properties))})"

    async def __call__(self, user: CurrentUser) -> AuthorizedUser:
        lacking = self.properties - set(user.properties)
        if lacking:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                detail=f"user {user.sub!r} lacks the properties {', '.join(sorted(lacking))}",
            )
        return user


# The policy of the pipeline, job, blob and realization routes.
NormalUserAccess = PropertyAccess(NORMAL_USER)
