"""What the commands share: one session per command, errors as messages (never tracebacks)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any, NoReturn

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.markup import escape

from diracx.api import Session, connect
from diracx.core.exceptions import DiracxError

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = 1) -> NoReturn:
    # the message is text, not markup: "targets = [release]" must print as written
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@contextlib.contextmanager
def session() -> Iterator[Session]:
    """A session to the configured engine; DiracX errors become a message and exit 1."""
    try:
        with connect() as s:
            yield s
    except DiracxError as exc:
        fail(str(exc))


def print_json(value: Any) -> None:
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    typer.echo(json.dumps(value, indent=2, sort_keys=True))
