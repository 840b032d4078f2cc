"""Refuse clients older than ``min_client_version`` (the ``DiracX-Client-Version`` header).

A middleware rather than a dependency, so that the header does not appear as a
parameter of every operation of the generated client (its thin layer sends it).
A request without the header is allowed (curl, probes). Health and discovery
routes are never refused: they are how an old client learns what to upgrade to.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from diracx.core.version import is_older

HEADER = "DiracX-Client-Version"
_HEADER_KEY = HEADER.lower().encode()
EXEMPT_PREFIXES = ("/api/health/", "/.well-known/")


def too_old_message(client: str, minimum: str) -> str:
    upgrade = f"upgrade diracx to at least {minimum} (pip install -U 'diracx>={minimum}')"
    return f"client version {client} is older than the minimum {minimum}: {upgrade}"


class ClientVersionMiddleware:
    """Pure ASGI middleware: a 400 naming the version to upgrade to, else pass through."""

    def __init__(self, app: ASGIApp, min_version: str) -> None:
        self.app = app
        self.min_version = min_version

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith(EXEMPT_PREFIXES):
            for key, value in scope["headers"]:
                if key == _HEADER_KEY:
                    client = value.decode("latin-1").strip()
                    if is_older(client, self.min_version):
                        response = JSONResponse(
                            {"detail": too_old_message(client, self.min_version)}, status_code=400
                        )
                        await response(scope, receive, send)
                        return
                    break
        await self.app(scope, receive, send)
