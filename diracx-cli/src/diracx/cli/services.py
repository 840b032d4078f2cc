"""``dirac server`` and ``dirac worker``: run the service or a worker in this terminal."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer


def _exec(module: str, *args: str) -> None:
    """Become the server or worker process (they are separate packages: we start, not import)."""
    argv = [sys.executable, "-m", module, *args]
    os.execv(sys.executable, argv)


def server(
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    embedded: Annotated[
        bool, typer.Option(help="the single-user engine: a worker too, a local token, idle stop")
    ] = False,
) -> None:
    """Run the DiracX service (settings from DIRACX_* variables)."""
    args = ["serve", "--host", host, "--port", str(port)]
    _exec("diracx.routers", *args, *(["--embedded"] if embedded else []))


def worker(
    concurrency: Annotated[int, typer.Option(help="broker messages handled at once")] = 2,
    slots: Annotated[
        int | None, typer.Option(help="builds run at once (default: 2 per core)")
    ] = None,
) -> None:
    """Run a worker that takes jobs from the broker (settings from DIRACX_* variables)."""
    _exec(
        "diracx.tasks",
        "worker",
        "--concurrency",
        str(concurrency),
        *(["--slots", str(slots)] if slots else []),
    )
