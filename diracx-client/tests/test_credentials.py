"""The credentials file of ``dirac login``, the token refresh and the device-flow polling.

The file is real (in a temporary directory), and so are the processes that share it.
The OAuth side is a small real HTTP server on loopback that answers as RFC 6749 / RFC
8628 say (rotating refresh tokens, revoking a login whose refresh token is used twice,
scripted device-flow answers): enough to see what the client sends and when. The
real service is exercised end to end in ``diracx-cli/tests/test_login.py``.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest

from diracx.client import AsyncDiracxClient, DiracxHTTPError
from diracx.client import auth as oauth
from diracx.client.credentials import CredentialsError, CredentialsFile, Login
from diracx.client.tokens import LoginExpiredError, StoredLogin

pytestmark = pytest.mark.timeout(120)


# --------------------------------------------------------------------------- the server


@dataclass
class OAuthServer:
    """What the loopback server knows and saw."""

    url: str = ""
    refresh_delay: float = 0.0  # seconds a refresh takes (widens races on purpose)
    access_lifetime: int = 1200
    refuse_all: bool = False  # GET answers 401 whatever the token
    valid_access: set[str] = field(default_factory=set)
    live_refresh: dict[str, str] = field(default_factory=dict)  # refresh token -> family
    used_refresh: dict[str, str] = field(default_factory=dict)
    revoked_families: set[str] = field(default_factory=set)
    refreshes: int = 0
    reuses: int = 0
    revocations: list[dict[str, str]] = field(default_factory=list)
    device_answers: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    device_polls: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_login(self, family: str | None = None) -> tuple[str, str]:
        """A fresh (access, refresh) pair of a new or given family."""
        family = family or secrets.token_hex(4)
        access, refresh = f"at-{secrets.token_hex(8)}", f"rt-{secrets.token_hex(8)}"
        self.valid_access.add(access)
        self.live_refresh[refresh] = family
        return access, refresh

    def token_answer(self, family: str | None = None) -> dict[str, Any]:
        access, refresh = self.new_login(family)
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_lifetime,
            "refresh_token": refresh,
            "scope": "vo:lhcb group:lhcb_user",
        }

    def refresh(self, token: str) -> tuple[int, dict[str, Any]]:
        time.sleep(self.refresh_delay)
        with self.lock:
            if token in self.used_refresh:  # reuse: the whole login is revoked
                self.reuses += 1
                self.revoked_families.add(self.used_refresh[token])
                return 400, {"error": "invalid_grant", "error_description": "reused"}
            family = self.live_refresh.pop(token, None)
            if family is None or family in self.revoked_families:
                return 400, {"error": "invalid_grant", "error_description": "unknown token"}
            self.used_refresh[token] = family
            self.refreshes += 1
            return 200, self.token_answer(family)


def _handler(server: OAuthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, doc: dict[str, Any]) -> None:
            body = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            if self.path == "/api/auth/device":
                self._send(
                    200,
                    {
                        "device_code": "dc-1",
                        "user_code": "ABCD-EFGH",
                        "verification_uri": f"{server.url}/device",
                        "verification_uri_complete": f"{server.url}/device?user_code=ABCD-EFGH",
                        "expires_in": 600,
                        "interval": 5,
                    },
                )
            elif self.path == "/api/auth/token" and form.get("grant_type") == "refresh_token":
                self._send(*server.refresh(form.get("refresh_token", "")))
            elif self.path == "/api/auth/token":
                server.device_polls.append(form)
                self._send(*server.device_answers.pop(0))
            elif self.path == "/api/auth/revoke":
                server.revocations.append(form)
                self._send(200, {})
            else:
                self._send(404, {"detail": "not found"})

        def do_GET(self) -> None:
            bearer = self.headers.get("Authorization", "").removeprefix("Bearer ")
            if server.refuse_all or bearer not in server.valid_access:
                self._send(401, {"detail": "invalid or expired token"})
            else:
                self._send(200, {"version": "1", "min_client_version": "0", "executors": []})

    return Handler


@pytest.fixture
def server() -> Iterator[OAuthServer]:
    state = OAuthServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        thread.join(10)
        httpd.server_close()


@pytest.fixture
def creds(tmp_path: Path) -> CredentialsFile:
    return CredentialsFile(tmp_path / "cache" / "diracx" / "credentials.json")


@pytest.fixture
async def stored(server: OAuthServer, creds: CredentialsFile) -> AsyncIterator[AsyncDiracxClient]:
    """A client of *server* with the login in *creds* (read at its first request)."""
    client = AsyncDiracxClient(server.url, StoredLogin(server.url, creds))
    try:
        yield client
    finally:
        await client.aclose()


def stale_login(server: OAuthServer, *, expires_in: float = -1.0) -> Login:
    """A stored login whose access token expires in *expires_in* s (the server's pair)."""
    access, refresh = server.new_login()
    return Login(access, time.time() + expires_in, refresh, vo="lhcb", group="lhcb_user")


# --------------------------------------------------------------------------- the file


def test_the_file_is_private_and_replaced_whole(creds: CredentialsFile) -> None:
    login = Login("at", time.time() + 600, "rt", vo="lhcb", group="lhcb_user")
    creds.put("https://diracx.example.org/", login)
    assert stat.S_IMODE(creds.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(creds.path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(creds.lock_path.stat().st_mode) == 0o600
    # a trailing slash does not make another service
    assert creds.get("https://diracx.example.org") == login
    creds.put("https://other.example.org", login)
    assert sorted(os.listdir(creds.path.parent)) == ["credentials.json", "credentials.json.lock"]
    doc = json.loads(creds.path.read_text())
    assert set(doc["logins"]) == {"https://diracx.example.org", "https://other.example.org"}
    assert creds.remove("https://other.example.org") == login
    assert set(creds.all()) == {"https://diracx.example.org"}


def test_a_file_others_can_read_is_refused(creds: CredentialsFile) -> None:
    creds.put("https://diracx.example.org", Login("at", time.time() + 600))
    creds.path.chmod(0o644)
    with pytest.raises(CredentialsError, match="readable by others") as info:
        creds.get("https://diracx.example.org")
    assert "chmod 600" in str(info.value) and str(creds.path) in str(info.value)
    creds.path.chmod(0o600)
    assert creds.get("https://diracx.example.org") is not None


def test_a_damaged_file_says_what_to_do(creds: CredentialsFile) -> None:
    creds.put("https://diracx.example.org", Login("at", time.time() + 600))
    creds.path.write_text("{not json")
    with pytest.raises(CredentialsError, match=r"damaged.*delete it"):
        creds.get("https://diracx.example.org")


def test_a_missing_file_means_no_login(creds: CredentialsFile) -> None:
    assert creds.get("https://diracx.example.org") is None
    assert not creds.path.parent.exists()  # reading creates nothing


def test_the_expiry_margin() -> None:
    now = 1_000_000.0
    assert Login("at", now + 61).fresh(now)
    assert not Login("at", now + 59).fresh(now)  # would expire on the way
    assert Login("at", now + 10).fresh(now, margin=5)
    assert Login("at", now, "rt").refreshable(now)
    assert not Login("at", now, "rt", refresh_expires_at=now - 1).refreshable(now)
    assert not Login("at", now).refreshable(now)


WRITER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from diracx.client.credentials import CredentialsFile, Login
    path, me, count, start = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    creds = CredentialsFile(path)
    while time.time() < start:
        time.sleep(0.001)
    for i in range(count):
        creds.put(f"https://{me}-{i}.example.org", Login(f"at-{me}-{i}", 1e10, f"rt-{me}-{i}"))
    """
)


def test_concurrent_writers_lose_nothing(creds: CredentialsFile) -> None:
    """Each put is a read-modify-write of the whole file: without the lock, writers that
    read the same version would drop each other's logins."""
    start, count = time.time() + 2.0, 25
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(creds.path), f"w{n}", str(count), str(start)]
        )
        for n in range(4)
    ]
    for p in procs:
        assert p.wait(60) == 0
    logins = creds.all()
    assert len(logins) == 4 * count
    assert logins["https://w3-7.example.org"].refresh_token == "rt-w3-7"
    assert stat.S_IMODE(creds.path.stat().st_mode) == 0o600
    assert [n for n in os.listdir(creds.path.parent) if n.endswith(".tmp")] == []


# --------------------------------------------------------------------------- refreshing


async def test_a_fresh_token_is_sent_as_it_is(server: OAuthServer, creds: CredentialsFile) -> None:
    login = stale_login(server, expires_in=120)
    creds.put(server.url, login)
    provider = StoredLogin(server.url, creds)
    assert await provider.token() == login.access_token
    assert server.refreshes == 0


async def test_a_token_about_to_expire_is_refreshed_and_stored(
    server: OAuthServer, creds: CredentialsFile
) -> None:
    login = stale_login(server, expires_in=30)  # within the 60 s margin
    creds.put(server.url, login)
    provider = StoredLogin(server.url, creds)
    token = await provider.token()
    assert token != login.access_token and token in server.valid_access
    assert server.refreshes == 1
    stored = creds.get(server.url)
    assert stored is not None and stored.access_token == token
    assert stored.refresh_token != login.refresh_token  # rotated: the new one is kept
    assert stored.expires_at == pytest.approx(time.time() + server.access_lifetime, abs=5)
    assert (stored.vo, stored.group) == ("lhcb", "lhcb_user")
    assert await provider.token() == token and server.refreshes == 1


async def test_coroutines_and_providers_share_one_refresh(
    server: OAuthServer, creds: CredentialsFile
) -> None:
    server.refresh_delay = 0.2
    creds.put(server.url, stale_login(server))
    providers = [StoredLogin(server.url, creds) for _ in range(3)]
    tokens = await asyncio.gather(*(p.token() for p in providers for _ in range(5)))
    assert len(set(tokens)) == 1
    assert server.refreshes == 1 and server.reuses == 0


REFRESHER = textwrap.dedent(
    """
    import asyncio, sys, time
    from pathlib import Path
    from diracx.client.credentials import CredentialsFile
    from diracx.client.tokens import StoredLogin
    url, path, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])

    async def main():
        provider = StoredLogin(url, CredentialsFile(path))
        await provider.login()  # every process starts from the same expired login
        print("ready", flush=True)
        while not go.exists():
            await asyncio.sleep(0.001)
        print(await provider.token(), provider.refreshes)

    asyncio.run(main())
    """
)


def test_processes_refreshing_at_once_refresh_once(
    server: OAuthServer, creds: CredentialsFile, tmp_path: Path
) -> None:
    """Refresh tokens are single-use and a reuse revokes the login: of several processes
    that find the token expired at once, one refreshes and the others read its result."""
    server.refresh_delay = 0.3
    creds.put(server.url, stale_login(server))
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REFRESHER, server.url, str(creds.path), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    for p in procs:  # all have read the expired login: now they go at once
        assert p.stdout is not None and p.stdout.readline() == "ready\n"
    go.touch()
    outputs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), outputs
    results = [out.split() for out, _ in outputs]
    assert len({token for token, _ in results}) == 1
    assert sum(int(n) for _, n in results) == 1
    assert server.refreshes == 1 and server.reuses == 0
    stored = creds.get(server.url)
    assert stored is not None and stored.refresh_token in server.live_refresh


async def test_a_401_refreshes_once_and_retries(
    server: OAuthServer, creds: CredentialsFile, stored: AsyncDiracxClient
) -> None:
    login = stale_login(server, expires_in=600)
    server.valid_access.discard(login.access_token)  # e.g. the service rotated its keys
    creds.put(server.url, login)
    assert (await stored.metadata()).version == "1"
    assert server.refreshes == 1
    # refused again after the refresh: the 401 is final (one retry, not a loop)
    server.refuse_all = True
    with pytest.raises(DiracxHTTPError) as info:
        await stored.metadata()
    assert info.value.status == 401 and server.refreshes == 2
    assert "run `dirac login` if your login was revoked" in str(info.value)


async def test_a_fixed_token_is_never_refreshed(server: OAuthServer) -> None:
    client = AsyncDiracxClient(server.url, "not-valid")
    try:
        with pytest.raises(DiracxHTTPError, match="invalid or expired token") as info:
            await client.metadata()
        assert info.value.status == 401 and server.refreshes == 0
    finally:
        await client.aclose()


async def test_without_a_login_requests_go_without_a_token(stored: AsyncDiracxClient) -> None:
    with pytest.raises(DiracxHTTPError, match=r"you are not logged in to .*dirac login"):
        await stored.metadata()


async def test_a_revoked_login_says_log_in_again(
    server: OAuthServer, creds: CredentialsFile, stored: AsyncDiracxClient
) -> None:
    login = stale_login(server)
    server.revoked_families.add(server.live_refresh[login.refresh_token or ""])
    creds.put(server.url, login)
    with pytest.raises(LoginExpiredError) as info:
        await stored.metadata()
    assert "has expired or was revoked" in str(info.value)
    assert "run `dirac login`" in str(info.value)
    assert creds.get(server.url) is None  # a dead login is not tried again


async def test_an_expired_refresh_token_is_not_even_sent(
    server: OAuthServer, creds: CredentialsFile
) -> None:
    login = stale_login(server)
    creds.put(server.url, Login(login.access_token, 0, login.refresh_token, time.time() - 1))
    with pytest.raises(LoginExpiredError, match="run `dirac login`"):
        await StoredLogin(server.url, creds).token()
    assert server.refreshes == 0


# --------------------------------------------------------------------------- device flow


class Clock:
    """A clock that only moves when the poller sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def pending(error: str = "authorization_pending") -> tuple[int, dict[str, Any]]:
    return 400, {"error": error, "error_description": error.replace("_", " ")}


async def test_polling_waits_and_slows_down_as_asked(server: OAuthServer) -> None:
    server.device_answers = [
        pending(),
        pending("slow_down"),
        pending(),
        (503, {"detail": "busy"}),
        (200, server.token_answer()),
    ]
    clock, waits = Clock(), []
    async with oauth.oauth_client(server.url) as http:
        device = await oauth.start_device_flow(http, vo="lhcb", group="lhcb_user")
        assert device.user_code == "ABCD-EFGH" and device.interval == 5
        tokens = await oauth.poll_device_flow(
            http,
            device,
            sleep=clock.sleep,
            clock=clock,
            on_wait=lambda reason, interval, left: waits.append(reason),
        )
    assert tokens.access_token in server.valid_access and tokens.refresh_token
    # 5 s, then 5 more after slow_down, and twice that while the service is unavailable
    assert clock.sleeps == [5, 5, 10, 10, 20]
    assert waits == ["pending", "pending", "slow_down", "pending", "unreachable"]
    assert all(
        p["grant_type"] == oauth.DEVICE_CODE_GRANT
        and p["device_code"] == "dc-1"
        and p["client_id"] == "dirac-cli"
        for p in server.device_polls
    )
    login = tokens.to_login()
    assert (login.vo, login.group) == ("lhcb", "lhcb_user")


@pytest.mark.parametrize(
    ("error", "message"),
    [
        ("access_denied", "the login was refused"),
        ("expired_token", "code expired .* run `dirac login` again"),
    ],
)
async def test_polling_stops_when_the_user_or_the_code_says_so(
    server: OAuthServer, error: str, message: str
) -> None:
    server.device_answers = [pending(), pending(error)]
    clock = Clock()
    async with oauth.oauth_client(server.url) as http:
        device = await oauth.start_device_flow(http, vo="lhcb")
        with pytest.raises(oauth.DeviceFlowError, match=message) as info:
            await oauth.poll_device_flow(http, device, sleep=clock.sleep, clock=clock)
    assert info.value.error == error and len(server.device_polls) == 2


async def test_polling_gives_up_when_the_code_expires(server: OAuthServer) -> None:
    server.device_answers = [pending()] * 200
    clock = Clock()
    async with oauth.oauth_client(server.url) as http:
        device = await oauth.start_device_flow(http)
        with pytest.raises(oauth.DeviceFlowError, match="code expired"):
            await oauth.poll_device_flow(http, device, sleep=clock.sleep, clock=clock)
    assert clock.now <= device.expires_in and len(server.device_polls) == 120
