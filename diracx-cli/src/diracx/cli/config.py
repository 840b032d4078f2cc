"""``dirac config validate FILE`` (locally, with the service's own model) and ``dirac config
show`` (what the service serves you at ``GET /api/config``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
import yaml

from diracx.cli._common import console, err_console, print_json, session
from diracx.core.config_source import ConfigError, load_config_file

app = typer.Typer(help="The service's configuration (VOs, groups, users...).", no_args_is_help=True)


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="the YAML configuration to check")],
) -> None:
    """Check FILE as the service would read it; print every error with its location."""
    try:
        config = load_config_file(file)
    except ConfigError as exc:
        err_console.print(f"[bold red]invalid:[/] {file}", highlight=False)
        for error in exc.errors:
            err_console.print(f"  {error}", highlight=False, markup=False)
        raise typer.Exit(1) from None
    console.print(f"valid: {config.summary()}", highlight=False)


@app.command()
def show(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of YAML")] = False,
) -> None:
    """The configuration the service serves you: your VO (every VO for an administrator)."""
    with session() as s:
        served = s.request_json("GET", "/api/config")
    if as_json:
        print_json(served)
        return
    typer.echo(yaml.safe_dump(served, sort_keys=False).rstrip())
