"""Entry point of ``dirac``: the Typer app with its sub-commands and extensions."""

from __future__ import annotations

import typer

from diracx.cli import (
    auth_admin,
    config,
    db,
    jobs,
    login,
    pipelines,
    run,
    services,
    store,
    version,
)
from diracx.cli.extensions import add_extension_commands

app = typer.Typer(
    name="dirac",
    help="DiracX: pipelines as Python code, every result kept in a content-addressed store.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("run")(run.run)
app.command("version")(version.version)
app.command("server")(services.server)
app.command("worker")(services.worker)
app.command("scheduler")(services.scheduler)
app.command("login")(login.login)
app.command("logout")(login.logout)
app.command("whoami")(login.whoami)
app.add_typer(jobs.app, name="jobs")
app.add_typer(pipelines.app, name="pipelines")
app.add_typer(db.app, name="db")
app.add_typer(auth_admin.app, name="auth")
app.add_typer(store.app, name="store")
app.add_typer(config.app, name="config")

# Extensions add commands, or replace ours by name (entry points diracx.cli).
add_extension_commands(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
