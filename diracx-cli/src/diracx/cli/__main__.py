"""Entry point of ``dirac``: the Typer app with its sub-commands and extensions."""

from __future__ import annotations

from importlib.metadata import entry_points

import typer

from diracx.cli import db, jobs, pipelines, run, services, store, version

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
app.add_typer(jobs.app, name="jobs")
app.add_typer(pipelines.app, name="pipelines")
app.add_typer(db.app, name="db")
app.add_typer(store.app, name="store")

# Extensions add commands (a Typer app each) through the diracx.cli entry points.
for ep in entry_points(group="diracx.cli"):
    app.add_typer(ep.load(), name=ep.name)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
