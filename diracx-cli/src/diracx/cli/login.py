"""``dirac login | logout | whoami``: the user's identity at a DiracX service.

``login`` runs the device flow: it prints a link and a code, the user approves in a
browser, and the tokens are kept in the credentials file (0600), which every later
command uses and refreshes on its own. The service is the URL given, else ``DIRACX_URL``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer
from rich.markup import escape
from rich.status import Status

from diracx.api import login as api
from diracx.cli._common import console, err_console, fail, print_json, session
from diracx.core.exceptions import DiracxError
from diracx.core.settings import ClientSettings

INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C

UrlArg = Annotated[
    str | None,
    typer.Argument(
        metavar="URL", help="the DiracX service (default: DIRACX_URL)", show_default=False
    ),
]


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 90 * 60:
        return f"{round(seconds / 60)} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _when(at: float | None) -> str:
    if at is None:
        return "unknown"
    left = at - time.time()
    moment = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))
    return f"{moment} (in {_duration(left)})" if left > 0 else f"{moment} (expired)"


def _show_code(device: api.DeviceAuthorization) -> None:
    link = device.verification_uri_complete
    console.print("To log in, open this link in a browser:", highlight=False)
    console.print(
        f"\n  {escape(link or device.verification_uri)}\n", highlight=False, soft_wrap=True
    )
    if link:
        console.print(
            f"or go to {escape(device.verification_uri)} and enter the code "
            f"[bold]{escape(device.user_code)}[/]",
            highlight=False,
            soft_wrap=True,
        )
    else:
        console.print(f"and enter the code [bold]{escape(device.user_code)}[/]", highlight=False)
    console.print(
        f"(the code expires in {_duration(device.expires_in)}; Ctrl-C to cancel)", highlight=False
    )


class _Waiting:
    """Shows that the login waits for the browser: a spinner on a terminal, else one line."""

    def __init__(self, status: Status | None) -> None:
        self.status = status
        self.said = False

    def __call__(self, reason: str, interval: float, left: float) -> None:
        text = {
            "pending": "waiting for the approval in the browser",
            "slow_down": f"waiting for the approval (polling every {interval:.0f} s, as asked)",
            "unreachable": f"the service does not answer: trying again in {interval:.0f} s",
        }.get(reason, "waiting for the approval")
        if self.status is not None:
            self.status.update(f"{text} (code valid for {_duration(left)} more)")
        elif reason == "unreachable" or not self.said:
            err_console.print(f"{text}...", highlight=False)
            self.said = True


@contextmanager
def _waiting() -> Iterator[_Waiting]:
    if not console.is_terminal:
        yield _Waiting(None)
        return
    with console.status("waiting for the approval in the browser") as status:
        yield _Waiting(status)


def login(
    url: UrlArg = None,
    vo: Annotated[
        str | None, typer.Option("--vo", help="the VO to log in to (default: as last time)")
    ] = None,
    group: Annotated[
        str | None, typer.Option("--group", help="the group to act as (default: the VO's)")
    ] = None,
) -> None:
    """Log in to a DiracX service in a browser (device flow); the tokens are kept for you."""
    try:
        target = api.service_url(url)
        with _waiting() as on_wait:
            result = asyncio.run(
                api.login(target, vo=vo, group=group, show=_show_code, on_wait=on_wait)
            )
    except KeyboardInterrupt:
        fail("login cancelled", INTERRUPTED)
    except DiracxError as exc:
        fail(str(exc))
    user = result.user
    console.print(
        f"logged in to {escape(result.url)} as [bold]{escape(user.preferred_username or user.sub)}"
        f"[/] (VO {escape(user.vo)}, group {escape(user.group)})",
        highlight=False,
    )
    console.print(f"properties: {escape(', '.join(user.properties) or '(none)')}", highlight=False)
    console.print(f"tokens kept in {escape(str(result.credentials.path))}", highlight=False)
    if ClientSettings().token is not None:
        err_console.print(
            "warning: DIRACX_TOKEN is set, and commands use it rather than this login: "
            "unset it to use the login",
            highlight=False,
        )


def logout(url: UrlArg = None) -> None:
    """Log out of a DiracX service: revoke the login there and forget its tokens."""
    try:
        target = api.service_url(url)
        result = asyncio.run(api.logout(target))
    except KeyboardInterrupt:
        fail("logout cancelled", INTERRUPTED)
    except DiracxError as exc:
        fail(str(exc))
    if not result.logged_in:
        console.print(f"not logged in to {escape(result.url)}: nothing to do", highlight=False)
        return
    console.print(f"logged out of {escape(result.url)}", highlight=False)
    if not result.revoked:
        err_console.print(
            f"warning: the service was not told ({escape(result.problem or 'no answer')}), so "
            "the login stays valid there until it expires; the tokens were deleted here",
            highlight=False,
        )


def _no_expiry(auth: str) -> str:
    return "when the engine stops" if auth == "engine" else "unknown"


def whoami(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Who you are at the service (DIRACX_URL, or the embedded engine): user, VO, group,
    properties, and until when the token lasts."""
    with session() as s:
        me = s.whoami()
    if as_json:
        print_json(me.to_json())
        return
    user = me.user
    source = {
        "login": "your login (dirac login)",
        "token": "DIRACX_TOKEN",
        "engine": "the embedded engine",
    }[me.auth]
    rows = [
        ("service", me.url),
        ("user", f"{user.preferred_username or user.sub} ({user.sub})"),
        ("VO", user.vo),
        ("group", user.group),
        ("properties", ", ".join(user.properties) or "(none)"),
        ("token from", source),
        ("token expires", _when(me.expires_at) if me.expires_at else _no_expiry(me.auth)),
    ]
    if me.refresh_expires_at is not None:
        rows.append(("login expires", _when(me.refresh_expires_at)))
    for name, value in rows:
        console.print(f"{name + ':':<15}{escape(value)}", highlight=False)
