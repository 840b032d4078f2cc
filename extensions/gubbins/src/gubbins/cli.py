"""``dirac lollygag list | add NAME`` (entry point ``diracx.cli``).

It talks to ``/api/lollygag`` through the user's DiracX session (``DIRACX_URL`` and the
login of ``dirac login``, or the embedded engine), like DiracX's own commands.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from diracx.api import connect
from diracx.core.exceptions import DiracxError

app = typer.Typer(
    help="Lollygags of your VO (the gubbins example extension).", no_args_is_help=True
)


def call(method: str, path: str) -> Any:
    try:
        with connect() as session:
            return session.request_json(method, path)
    except DiracxError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command("list")
def list_lollygags(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """The lollygags of your VO."""
    found = call("GET", "/api/lollygag")
    if as_json:
        typer.echo(json.dumps(found, indent=2, sort_keys=True))
        return
    typer.echo(f"VO {found['vo']} (default group {found['default_group']}):")
    for item in found["lollygags"]:
        typer.echo(f"  {item['name']}  by {item['owner']}  {item['created']}")
    if not found["lollygags"]:
        typer.echo("  no lollygag yet: dirac lollygag add NAME")


@app.command()
def add(name: Annotated[str, typer.Argument(help="1-64 letters, digits, '.', '_' or '-'")]) -> None:
    """Add NAME to your VO's lollygags."""
    added = call("POST", f"/api/lollygag/{name}")
    verb = "added" if added["added"] else "already there"
    typer.echo(f"{added['name']}: {verb} (by {added['owner']})")
