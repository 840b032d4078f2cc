"""OAuth 2 vocabulary shared by the token endpoint and the login flows.

Errors follow RFC 6749 section 5.2 (``{"error": ..., "error_description": ...}``), which
is what OAuth clients, ``dirac login`` included, expect from a token endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import status
from fastapi.responses import JSONResponse
from pydantic import BaseModel

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass(frozen=True)
class Identity:
    """Who logged in, and as which VO and group: what a token is issued for."""

    sub: str
    preferred_username: str
    vo: str
    group: str
    client_id: str


class OAuthError(Exception):
    """An RFC 6749 / RFC 8628 error answer (``invalid_grant``, ``authorization_pending``...)."""

    def __init__(
        self, error: str, description: str, status_code: int = status.HTTP_400_BAD_REQUEST
    ) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status_code = status_code

    def response(self) -> JSONResponse:
        headers = {"Cache-Control": "no-store"}
        if self.status_code == status.HTTP_401_UNAUTHORIZED:
            headers["WWW-Authenticate"] = "Bearer"
        return JSONResponse(
            {"error": self.error, "error_description": self.description},
            status_code=self.status_code,
            headers=headers,
        )


class TokenResponse(BaseModel):
    """RFC 6749 section 5.1."""

    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    refresh_token: str | None = None
    scope: str
