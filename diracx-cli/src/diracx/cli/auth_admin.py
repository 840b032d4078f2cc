"""``dirac auth hash-password | rotate-key | keys``: what an administrator of the service does.

``hash-password`` prints the argon2id hash of a password or client secret, for the
configuration (``accounts.<name>.password_hash``, ``service_accounts.<id>.secret_hash``).
``rotate-key`` and ``keys`` work on the service's database (``DIRACX_DB_URL``, with its
``DIRACX_SECRET_KEY``): like ``dirac db``, they run the server package's code.
"""

from __future__ import annotations

import getpass
import importlib.util
import sys
from typing import Annotated

import typer

from diracx.cli._common import fail
from diracx.cli.services import _exec
from diracx.core.passwords import hash_password

app = typer.Typer(
    help="Administration of the service's authentication (hashes, signing keys).",
    no_args_is_help=True,
)


def _read_secret(stdin: bool) -> str:
    if stdin:
        value = sys.stdin.readline().rstrip("\r\n")
        if not value:
            fail("no password on the standard input")
        return value
    try:
        first = getpass.getpass("Password: ")
        second = getpass.getpass("Again: ")
    except (EOFError, KeyboardInterrupt):
        fail("no password given")
    if first != second:
        fail("the two passwords differ")
    if not first:
        fail("the password is empty")
    return first


@app.command("hash-password")
def hash_password_command(
    stdin: Annotated[
        bool, typer.Option("--stdin", help="read the password from the first line of stdin")
    ] = False,
) -> None:
    """Print the argon2id hash of a password (asked twice, not echoed) for the configuration."""
    typer.echo(hash_password(_read_secret(stdin)))


def _server_module(*args: str) -> None:
    if importlib.util.find_spec("diracx.routers") is None:
        fail("`dirac auth` needs the server packages: pip install diracx-routers")
    _exec("diracx.routers.auth_admin", *args)


@app.command("rotate-key")
def rotate_key() -> None:
    """Add a signing key that signs from now on; older keys verify until their tokens expire."""
    _server_module("rotate-key")


@app.command("keys")
def keys() -> None:
    """List the signing keys: the one that signs, those that still verify, the retired."""
    _server_module("keys")
