"""``dirac version``: the versions of this client's parts and of the server."""

from __future__ import annotations

from typing import Annotated

import typer

from diracx.cli._common import console, fail, print_json, session
from diracx.core.version import check_versions


def version(
    as_json: Annotated[bool, typer.Option("--json")] = False,
    local: Annotated[bool, typer.Option("--local", help="do not ask the server")] = False,
) -> None:
    """Print the client and server versions; a mix of client part versions is an error."""
    parts = check_versions()
    server = None
    if not local:
        with session() as s:
            server = s.server_metadata()
    if as_json:
        print_json({"client": parts, "server": server.model_dump(mode="json") if server else None})
    else:
        for name, v in sorted(parts.items()):
            console.print(f"{name} {v}", highlight=False)
        if server is not None:
            console.print(f"server {server.version} (minimum client {server.min_client_version})")
    if len(set(parts.values())) > 1:
        fail("the installed diracx packages have different versions: reinstall them together")
