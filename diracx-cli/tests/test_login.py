"""``dirac login | whoami | logout`` end to end, as a user runs them.

The service is the real DiracX app (uvicorn on loopback, a migrated SQLite database)
with two VOs: ``sso``, whose users log in at an OpenID Connect provider that the test
starts on loopback (``diracx.testing.oidc``), and ``local``, with built-in accounts.
``dirac`` runs as a subprocess with its own credentials file; the test reads the link
it prints and plays the user's browser (``diracx.testing.browser``: httpx that follows
redirects and submits forms).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from diracx.core.passwords import hash_password
from diracx.db.migrate import upgrade
from diracx.routers import create_app
from diracx.routers.queue import RecordingJobQueue
from diracx.testing.auth import login_service_settings, sso_and_local_config
from diracx.testing.browser import Browser
from diracx.testing.engine import EngineProcess
from diracx.testing.loopback import LoopbackServer
from diracx.testing.oidc import OIDCProvider
from diracx.testing.utils import free_port

pytestmark = pytest.mark.timeout(180)

IDP_CLIENT_ID = "diracx-service"
IDP_SECRET = "idp-client-secret"
PASSWORDS = {"dave": "dave's passphrase"}
LINK = re.compile(r"(https?://\S+\?user_code=[\w-]+)")
LOGIN_TIMEOUT = 60.0


def service_config(issuer: str) -> dict[str, Any]:
    return sso_and_local_config(
        issuer,
        client_id=IDP_CLIENT_ID,
        client_secret=IDP_SECRET,
        sso_users={"oidc-sub-alice": {"groups": ["users", "admins"]}},
        local_users={"dave": {"groups": ["users"]}},
        password_hashes={n: hash_password(p) for n, p in PASSWORDS.items()},
    )


@dataclass
class Service:
    url: str
    provider: OIDCProvider


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """The service with both VOs, its client registered at the test provider."""
    root = tmp_path_factory.mktemp("login-service")
    db_url = f"sqlite+aiosqlite:///{root / 'diracx.db'}"
    upgrade(db_url)
    with OIDCProvider() as provider, LoopbackServer() as server:
        provider.register_client(
            IDP_CLIENT_ID, f"{server.url}/api/auth/device/callback", secret=IDP_SECRET
        )
        settings = login_service_settings(
            root,
            db_url,
            service_config(provider.issuer),
            server.url,
            min_client_version="0.0.0",
            device_flow_interval=1,  # the client polls every second: quick logins
        )
        server.start(create_app(settings, job_queue=RecordingJobQueue()))
        yield Service(server.url, provider)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """The user's directories: the credentials file goes to its cache (XDG)."""
    return tmp_path / "home"


def env_of(home: Path, url: str | None, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRACX_")}
    env.update(
        XDG_CACHE_HOME=str(home / ".cache"),
        DIRACX_DATA_DIR=more.pop("DIRACX_DATA_DIR", str(home / "data")),
        COLUMNS="200",
        NO_COLOR="1",
        TERM="dumb",
        PYTHONUNBUFFERED="1",
    )
    if url:
        env["DIRACX_URL"] = url
    env.update(more)
    return env


def credentials_path(home: Path) -> Path:
    return home / ".cache" / "diracx" / "credentials.json"


def dirac(
    home: Path, url: str | None, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diracx.cli", *args],
        capture_output=True,
        text=True,
        env=env_of(home, url, **(env or {})),
        timeout=120,
    )


def no_traceback(text: str) -> None:
    assert "Traceback" not in text, text


class Login:
    """``dirac login ...`` running in the background; its output read line by line."""

    def __init__(self, home: Path, url: str | None, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "diracx.cli", "login", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env_of(home, url),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def link(self) -> str:
        """The verification link it prints (with the user code)."""
        deadline = time.monotonic() + LOGIN_TIMEOUT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1.0)
            except queue.Empty:
                continue
            if line is None:
                break
            self.seen.append(line)
            found = LINK.search(line)
            if found:
                return found.group(1)
        self.proc.kill()
        raise AssertionError(f"no link printed: {''.join(self.seen)}{self._stderr()}")

    def _stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read()

    def finish(self) -> tuple[int, str, str]:
        """Wait for it to end: (exit code, all its output, its errors)."""
        try:
            code = self.proc.wait(LOGIN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        while (line := self.lines.get(timeout=10)) is not None:
            self.seen.append(line)
        return code, "".join(self.seen), self._stderr()


StartLogin = Callable[..., Login]


@pytest.fixture
def start_login(home: Path) -> Iterator[StartLogin]:
    """``start_login(url, *args)``: a background ``dirac login``, killed after the test."""
    started: list[Login] = []

    def start(url: str | None, *args: str) -> Login:
        started.append(Login(home, url, *args))
        return started[-1]

    yield start
    for login in started:
        if login.proc.poll() is None:
            login.proc.kill()
        login.proc.wait(10)


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def refresh_works(url: str, refresh_token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": "dirac-cli"}
    return httpx.post(f"{url}/api/auth/token", data=form, timeout=30)


# --------------------------------------------------------------------------- the tests


def test_login_at_the_identity_provider_whoami_and_logout(
    service: Service, home: Path, browser: Browser, start_login: StartLogin
) -> None:
    login = start_login(service.url, "--vo", "sso")
    link = login.link()
    service.provider.login_as("alice")
    page = browser.open(link)
    assert page.status_code == 200 and "You are logged in" in page.text, page.text
    code, out, err = login.finish()
    assert code == 0, out + err
    assert f"logged in to {service.url} as alice (VO sso, group users)" in out
    assert "enter the code" in out and "NormalUser" in out
    no_traceback(out + err)

    path = credentials_path(home)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    stored = json.loads(path.read_text())["logins"][service.url]
    assert (stored["vo"], stored["group"]) == ("sso", "users")
    assert stored["refresh_token"] and stored["expires_at"] > time.time() + 60

    me = as_json(dirac(home, service.url, "whoami", "--json"))
    assert (me["sub"], me["preferred_username"]) == ("oidc-sub-alice", "alice")
    assert (me["vo"], me["group"], me["auth"]) == ("sso", "users", "login")
    assert "NormalUser" in me["properties"] and me["expires_at"]
    shown = dirac(home, service.url, "whoami")
    assert shown.returncode == 0 and "VO:" in shown.stdout and "sso" in shown.stdout
    # a protected call with the stored token
    found = as_json(dirac(home, service.url, "jobs", "search", "--json"))
    assert found["jobs"] == []

    # the access token expires: the next command refreshes it (and the refresh token
    # rotates), without the user noticing
    doc = json.loads(path.read_text())
    doc["logins"][service.url]["expires_at"] = time.time() - 1
    path.write_text(json.dumps(doc))
    assert as_json(dirac(home, service.url, "whoami", "--json"))["sub"] == "oidc-sub-alice"
    after = json.loads(path.read_text())["logins"][service.url]
    assert after["access_token"] != stored["access_token"]
    assert after["refresh_token"] != stored["refresh_token"]
    assert after["expires_at"] > time.time() + 60

    out_ = dirac(home, service.url, "logout")
    assert out_.returncode == 0 and f"logged out of {service.url}" in out_.stdout, out_.stderr
    assert "not told" not in out_.stderr
    assert service.url not in json.loads(path.read_text())["logins"]
    # revoked at the service: neither the refresh token nor the access token works
    r = refresh_works(service.url, after["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant", r.text
    r = httpx.get(
        f"{service.url}/api/auth/userinfo",
        headers={"Authorization": f"Bearer {after['access_token']}"},
    )
    assert r.status_code == 401, r.text
    # and the CLI says what to do
    gone = dirac(home, service.url, "whoami")
    assert gone.returncode == 1 and "not logged in" in gone.stderr and "dirac login" in gone.stderr
    no_traceback(gone.stderr)
    again = dirac(home, service.url, "logout")
    assert again.returncode == 0 and "not logged in" in again.stdout


def test_login_with_a_built_in_account(
    service: Service, home: Path, browser: Browser, start_login: StartLogin
) -> None:
    login = start_login(None, service.url, "--vo", "local")  # the URL as an argument
    form = browser.open(login.link())
    assert form.status_code == 200, form.text
    wrong = browser.submit(form, username="dave", password="not it")
    assert wrong.status_code == 401
    page = browser.submit(wrong, username="dave", password=PASSWORDS["dave"])
    assert "You are logged in" in page.text, page.text
    code, out, err = login.finish()
    assert code == 0 and "as dave (VO local, group users)" in out, out + err
    me = as_json(dirac(home, service.url, "whoami", "--json"))
    assert (me["sub"], me["vo"]) == ("dave", "local")

    # logging in again (VO and group as last time) replaces the login, and ends the old one
    old = json.loads(credentials_path(home).read_text())["logins"][service.url]
    login = start_login(service.url)
    page = browser.submit(browser.open(login.link()), username="dave", password=PASSWORDS["dave"])
    assert "You are logged in" in page.text
    code, out, err = login.finish()
    assert code == 0 and "(VO local, group users)" in out, out + err
    r = refresh_works(service.url, old["refresh_token"])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_processes_refreshing_at_once_keep_the_login(
    service: Service, home: Path, browser: Browser, start_login: StartLogin
) -> None:
    """Refresh tokens are single-use, and the service revokes a login whose refresh
    token is used twice: commands that find the token expired at the same moment must
    refresh once between them."""
    login = start_login(service.url, "--vo", "local")
    browser.submit(browser.open(login.link()), username="dave", password=PASSWORDS["dave"])
    assert login.finish()[0] == 0
    path = credentials_path(home)
    doc = json.loads(path.read_text())
    doc["logins"][service.url]["expires_at"] = time.time() - 1
    path.write_text(json.dumps(doc))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "diracx.cli", "whoami", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env_of(home, service.url),
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert {json.loads(out)["sub"] for out, _ in results} == {"dave"}
    # the login is still alive: its current refresh token works
    stored = json.loads(path.read_text())["logins"][service.url]
    assert refresh_works(service.url, stored["refresh_token"]).status_code == 200


def test_the_user_refuses(
    service: Service, home: Path, browser: Browser, start_login: StartLogin
) -> None:
    service.provider.login_as(None)  # nobody logged in at the provider: it shows its form
    login = start_login(service.url, "--vo", "sso")
    form = browser.open(login.link())
    page = browser.submit(form, button="deny")
    assert page.status_code == 200, page.text
    code, out, err = login.finish()
    assert code == 1 and "the login was refused" in err, out + err
    no_traceback(out + err)
    assert not credentials_path(home).exists()


def test_a_login_for_an_unknown_vo_says_so(service: Service, home: Path) -> None:
    proc = dirac(home, service.url, "login", "--vo", "nope")
    assert proc.returncode == 1 and "unknown VO" in proc.stderr, proc.stdout + proc.stderr
    no_traceback(proc.stderr)
    # two VOs, and no earlier login to take the VO from: which one?
    proc = dirac(home, service.url, "login")
    assert proc.returncode == 1 and "dirac login --vo VO" in proc.stderr, proc.stderr


def test_whoami_with_the_engine_or_a_token(home: Path, embedded_engine: EngineProcess) -> None:
    """A given token (DIRACX_TOKEN) or the embedded engine's bypasses the credentials file."""
    engine_env = {"DIRACX_DATA_DIR": str(embedded_engine.data_dir)}
    me = as_json(dirac(home, None, "whoami", "--json", env=engine_env))
    assert (me["vo"], me["auth"], me["expires_at"]) == ("local", "engine", None)
    token_env = {**engine_env, "DIRACX_TOKEN": embedded_engine.token}
    me = as_json(dirac(home, embedded_engine.url, "whoami", "--json", env=token_env))
    assert (me["sub"], me["auth"]) == ("local", "token")
    assert not credentials_path(home).exists()


def test_ctrl_c_stops_the_login_cleanly(service: Service, start_login: StartLogin) -> None:
    login = start_login(service.url, "--vo", "sso")
    login.link()
    login.proc.send_signal(signal.SIGINT)
    code, out, err = login.finish()
    assert code == 130 and "login cancelled" in err, out + err
    no_traceback(out + err)


def test_logout_when_the_service_is_gone(home: Path) -> None:
    """The tokens are deleted here even if the service cannot be told."""
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    path = credentials_path(home)
    path.parent.mkdir(parents=True, mode=0o700)
    doc = {
        "version": 1,
        "logins": {
            url: {"access_token": "at", "expires_at": time.time() + 600, "refresh_token": "rt"}
        },
    }
    path.write_text(json.dumps(doc))
    path.chmod(0o600)
    proc = dirac(home, url, "logout")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"logged out of {url}" in proc.stdout
    assert "the service was not told" in proc.stderr and "cannot reach" in proc.stderr
    assert json.loads(path.read_text())["logins"] == {}


def test_a_credentials_file_others_can_read_is_refused(home: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    path = credentials_path(home)
    path.parent.mkdir(parents=True, mode=0o700)
    path.write_text(json.dumps({"version": 1, "logins": {}}))
    path.chmod(0o644)
    proc = dirac(home, url, "whoami")
    assert proc.returncode == 1 and "readable by others" in proc.stderr, proc.stderr
    no_traceback(proc.stderr)


def test_login_needs_a_service(home: Path) -> None:
    proc = dirac(home, None, "login")
    assert proc.returncode == 1 and "DIRACX_URL" in proc.stderr
