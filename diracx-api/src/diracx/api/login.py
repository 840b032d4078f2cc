"""Logging in to a DiracX service, out, and who one is there.

``login()`` runs the device authorization grant (RFC 8628): the caller shows the user a
URL and a code, the user approves in a browser (through the VO's identity provider or a
built-in account), and the tokens land in the credentials file
(``diracx.client.credentials``), which sessions then use and refresh on their own.
``logout()`` revokes the login at the service and forgets it, even if the service cannot
be reached. Sessions answer ``whoami()`` (``AsyncSession.whoami``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from diracx.client import auth
from diracx.client.auth import DeviceAuthorization, DeviceFlowError, UserInfo, WaitCallback
from diracx.client.credentials import CredentialsFile, Login, service_key
from diracx.core.exceptions import DiracxError
from diracx.core.settings import ClientSettings

AuthSource = Literal["login", "token", "engine"]

__all__ = [
    "DeviceAuthorization",
    "DeviceFlowError",
    "LoginResult",
    "LogoutResult",
    "UserInfo",
    "WhoAmI",
    "credentials_file",
    "login",
    "logout",
    "service_url",
]


def credentials_file() -> CredentialsFile:
    """The credentials file the settings name (``DIRACX_CREDENTIALS_PATH``)."""
    return CredentialsFile(ClientSettings().credentials_path)


def service_url(url: str | None) -> str:
    """*url*, else ``DIRACX_URL``; the embedded engine needs no login."""
    url = url or ClientSettings().url
    if not url:
        raise DiracxError(
            "which service? Give its URL or set DIRACX_URL (the embedded engine needs no login)"
        )
    return service_key(url)


def _iso(when: float | None) -> str | None:
    return None if when is None else time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(when))


@dataclass(frozen=True)
class WhoAmI:
    """Who a session acts as, and until when its token lasts."""

    url: str
    user: UserInfo
    auth: AuthSource  # a stored login, a given token (DIRACX_TOKEN) or the embedded engine
    expires_at: float | None = None  # of the access token, if known
    refresh_expires_at: float | None = None  # of the login (a stored one), if known

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            **self.user.model_dump(mode="json"),
            "auth": self.auth,
            "expires_at": _iso(self.expires_at),
            "refresh_expires_at": _iso(self.refresh_expires_at),
        }


@dataclass(frozen=True)
class LoginResult:
    url: str
    user: UserInfo
    login: Login
    credentials: CredentialsFile


async def login(
    url: str,
    *,
    vo: str | None = None,
    group: str | None = None,
    show: Callable[[DeviceAuthorization], None],
    on_wait: WaitCallback | None = None,
    credentials: CredentialsFile | None = None,
) -> LoginResult:
    """Log in to *url* with the device flow; *show* tells the user where to approve.

    Without *vo* (and *group*), those of a previous login to *url* are asked for again.
    """
    url = service_key(url)
    file = credentials or credentials_file()
    previous = await asyncio.to_thread(file.get, url)
    if vo is None and previous is not None:
        vo = previous.vo
        group = group if group is not None else previous.group
    async with auth.oauth_client(url) as http:
        try:
            device = await auth.start_device_flow(http, vo=vo, group=group)
        except auth.OAuthClientError as exc:
            if exc.error == "invalid_scope" and vo is None:
                raise DiracxError(f"{exc}: name the VO (`dirac login --vo VO`)") from None
            raise
        show(device)
        tokens = await auth.poll_device_flow(http, device, on_wait=on_wait)
        new = tokens.to_login()
        async with file.aupdate() as logins:
            replaced = logins.get(url)
            logins.put(url, new)
        user = await auth.userinfo(http, new.access_token)
        if replaced is not None and replaced.refresh_token:
            # the earlier login is not needed any more: end it (if the service is there)
            with contextlib.suppress(DiracxError):
                await auth.revoke(http, replaced.refresh_token)
    return LoginResult(url=url, user=user, login=new, credentials=file)


@dataclass(frozen=True)
class LogoutResult:
    url: str
    logged_in: bool  # whether there was a login to forget
    revoked: bool  # whether the service was told
    problem: str | None = None  # why the service was not told


async def logout(url: str, *, credentials: CredentialsFile | None = None) -> LogoutResult:
    """Forget the login to *url*, revoking it at the service first (if it answers)."""
    url = service_key(url)
    file = credentials or credentials_file()
    if not file.path.exists():
        return LogoutResult(url=url, logged_in=False, revoked=False)
    async with file.aupdate() as logins:
        stored = logins.get(url)
        if stored is None:
            return LogoutResult(url=url, logged_in=False, revoked=False)
        problem = None
        token = stored.refresh_token or stored.access_token
        hint = "refresh_token" if stored.refresh_token else "access_token"
        try:
            async with auth.oauth_client(url, timeout=10.0) as http:
                await auth.revoke(http, token, hint=hint)
        except DiracxError as exc:
            problem = str(exc)
        # forgotten here whatever the service said: the user asked to be logged out
        logins.remove(url)
    return LogoutResult(url=url, logged_in=True, revoked=problem is None, problem=problem)
