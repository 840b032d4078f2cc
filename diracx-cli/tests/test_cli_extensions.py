"""Commands of extensions (entry points ``diracx.cli``): added, or replacing ours by name."""

from __future__ import annotations

import typer
from typer.testing import CliRunner

from diracx.cli.extensions import add_command


def make_app() -> typer.Typer:
    app = typer.Typer(no_args_is_help=True)
    group = typer.Typer()

    @group.command()
    def show() -> None:
        typer.echo("ours")

    @app.command("hello")
    def hello() -> None:
        typer.echo("hello from diracx")

    app.add_typer(group, name="config")
    return app


def test_an_extension_adds_and_replaces_commands() -> None:
    app = make_app()
    theirs = typer.Typer()

    @theirs.command()
    def show() -> None:
        typer.echo("theirs")

    def hello() -> None:
        typer.echo("hello from the extension")

    add_command(app, "config", theirs)  # a group replaces the group of the same name
    add_command(app, "hello", hello)  # a function replaces the command
    add_command(app, "extra", hello)
    runner = CliRunner()
    assert runner.invoke(app, ["config", "show"]).output == "theirs\n"
    assert runner.invoke(app, ["hello"]).output == "hello from the extension\n"
    assert runner.invoke(app, ["extra"]).output == "hello from the extension\n"


def test_the_example_extension_is_in_dirac() -> None:
    from diracx.cli.__main__ import app

    names = {g.name for g in app.registered_groups}
    assert {"config", "lollygag"} <= names
