"""``dirac db upgrade``: apply the database migrations (settings from DIRACX_* variables).

The database code lives in the server packages, which the CLI does not import: like
``dirac server``, it becomes ``python -m diracx.db``.
"""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer

from diracx.cli._common import fail
from diracx.cli.services import _exec

app = typer.Typer(help="The DiracX database (DIRACX_DB_URL).", no_args_is_help=True)


@app.command()
def upgrade(
    revision: Annotated[
        str, typer.Option(help="the migration to reach (default: the newest)")
    ] = "head",
) -> None:
    """Apply the migrations to DIRACX_DB_URL; print the revision before and after."""
    if importlib.util.find_spec("diracx.db") is None:
        fail("`dirac db` needs the server packages: pip install diracx-db (or diracx-routers)")
    _exec("diracx.db", "upgrade", "--revision", revision)
