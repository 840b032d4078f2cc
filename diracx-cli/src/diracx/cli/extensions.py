"""Commands that extensions add to ``dirac`` (entry points ``diracx.cli``).

``name = "pkg.module:app"`` adds a Typer app as ``dirac <name> ...``; a plain function
becomes the command ``dirac <name>``. An extension's command replaces a built-in one of
the same name. An entry point that cannot be loaded is reported and skipped: the other
commands keep working.
"""

from __future__ import annotations

from collections.abc import Callable

import typer

from diracx.cli._common import err_console
from diracx.core import extensions as ext


def add_command(app: typer.Typer, name: str, target: object) -> None:
    """Add *target* (a Typer app or a function) to *app* as *name*, replacing any
    command or group of that name."""
    app.registered_commands = [c for c in app.registered_commands if c.name != name]
    app.registered_groups = [g for g in app.registered_groups if g.name != name]
    if isinstance(target, typer.Typer):
        app.add_typer(target, name=name)
    elif callable(target):
        function: Callable[..., object] = target
        app.command(name)(function)
    else:
        raise ext.ExtensionError(f"dirac {name}: {target!r} is neither a Typer app nor a function")


def add_extension_commands(app: typer.Typer) -> None:
    for name, ep in ext.select_entry_points(ext.CLI).items():
        try:
            add_command(app, name, ext.load_entry_point(ep))
        except ext.ExtensionError as exc:
            err_console.print(f"[yellow]warning:[/] {exc}", highlight=False, markup=False)
