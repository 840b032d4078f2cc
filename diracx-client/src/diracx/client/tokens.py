"""The token of a stored login, refreshed transparently.

``StoredLogin`` is the ``TokenProvider`` of a client that uses ``dirac login``'s
credentials file: it sends the stored access token while it lasts (with a margin), and
refreshes it before, or once after the service answered 401. Refreshing happens under
the file's exclusive lock, and the file is read again once the lock is held: refresh
tokens are single-use (the service revokes the whole login when one is used twice), so
when several processes need a new token at once, one refreshes and the others take what
it stored.
"""

from __future__ import annotations

import asyncio

from diracx.client import auth
from diracx.client.credentials import EXPIRY_MARGIN, CredentialsFile, Login, Logins, service_key
from diracx.core.exceptions import DiracxError

# What the service answers when a refresh token is unknown, used up, expired or revoked
_DEAD_LOGIN = frozenset({"invalid_grant", "invalid_token", "unauthorized_client"})


class LoginExpiredError(DiracxError):
    """The stored login cannot be refreshed any more: the user must log in again."""


def expired_message(url: str, why: str | None = None) -> str:
    detail = f" ({why})" if why else ""
    return f"your login to {url} has expired or was revoked{detail}: run `dirac login`"


class StoredLogin:
    """The login to *url* stored in *file*, refreshed as needed."""

    renewable = True

    def __init__(
        self,
        url: str,
        file: CredentialsFile | None = None,
        *,
        client_id: str = auth.CLIENT_ID,
        margin: float = EXPIRY_MARGIN,
    ) -> None:
        self.url = service_key(url)
        self.file = file or CredentialsFile()
        self.client_id = client_id
        self.margin = margin
        self.refreshes = 0  # refreshes this provider did (tests and diagnostics)
        self._current: Login | None = None
        self._lock = asyncio.Lock()  # one refresh at a time within this process

    async def login(self) -> Login | None:
        """The stored login (as last read or refreshed), None if there is none."""
        if self._current is None:
            self._current = await asyncio.to_thread(self.file.get, self.url)
        return self._current

    async def token(self) -> str | None:
        login = await self.login()
        if login is None:
            return None  # not logged in: requests go without a token (public routes work)
        if login.fresh(margin=self.margin):
            return login.access_token
        return await self._refresh(login.access_token)

    async def renew(self, rejected: str) -> str | None:
        return await self._refresh(rejected, force=True)

    def hint(self, sent: str | None) -> str | None:
        if sent is None:
            return f"you are not logged in to {self.url}: run `dirac login` or set DIRACX_TOKEN"
        return "run `dirac login` if your login was revoked"

    async def _refresh(self, stale: str, *, force: bool = False) -> str | None:
        """A token other than *stale*: one stored meanwhile by another coroutine or process,
        else a refreshed one. *force*: the service refused *stale*, however fresh it looks."""
        async with self._lock:
            current = self._current
            if current is not None and current.access_token != stale and self._usable(current):
                return current.access_token
            async with self.file.aupdate() as logins:
                login = logins.get(self.url)
                self._current = login
                if login is None:
                    return None  # logged out meanwhile
                if login.access_token != stale and self._usable(login):
                    return login.access_token  # another process refreshed already
                if not force and login.fresh(margin=self.margin):
                    return login.access_token
                return await self._refresh_locked(login, logins)

    def _usable(self, login: Login) -> bool:
        return login.fresh(margin=self.margin)

    async def _refresh_locked(self, login: Login, logins: Logins) -> str:
        if not login.refreshable():
            raise LoginExpiredError(expired_message(self.url))
        assert login.refresh_token is not None
        try:
            async with auth.oauth_client(self.url) as http:
                tokens = await auth.refresh(http, login.refresh_token, client_id=self.client_id)
        except auth.OAuthClientError as exc:
            if exc.error not in _DEAD_LOGIN:
                raise
            # the login is dead for good: forget it, so that no one tries it again
            logins.remove(self.url)
            self._current = None
            raise LoginExpiredError(expired_message(self.url, exc.description)) from None
        new = tokens.to_login(previous=login)
        logins.put(self.url, new)  # at once: the old refresh token is used up
        self._current = new
        self.refreshes += 1
        return new.access_token
