"""``dirac jobs``: inspect and kill jobs."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from diracx.cli._common import console, err_console, print_json, session
from diracx.cli.jobs_api import register as register_jobs_api
from diracx.core.exceptions import DiracxError

app = typer.Typer(
    help="Inspect and kill jobs (one build of one derivation each).", no_args_is_help=True
)


@app.command("show")
def show(
    job_id: Annotated[int, typer.Argument(help="the job's id")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
    log: Annotated[bool, typer.Option("--log", help="print the build log too")] = False,
) -> None:
    """A job with its status history."""
    with session() as s:
        job = s.job(job_id)
        text = s.job_log(job_id) if log else None
    if as_json:
        print_json(job.model_dump(mode="json") | ({"log_text": text} if log else {}))
        return
    console.print(
        f"[bold]job {job.id}[/] {job.name}: {job.status} ({job.minor_status})", highlight=False
    )
    console.print(f"derivation {job.dref}\npipeline {job.pipeline_id}, attempt {job.attempt}")
    if job.rref:
        console.print(f"realization {job.rref}")
    table = Table("time", "status", "minor status", "source")
    for h in job.history:
        table.add_row(
            h.timestamp.isoformat(timespec="milliseconds"), h.status, h.minor_status, h.source
        )
    console.print(table)
    if text is not None:
        console.print(text, highlight=False, markup=False)


@app.command("kill")
def kill(
    job_ids: Annotated[
        list[int], typer.Argument(metavar="ID...", help="the ids of the jobs to kill")
    ],
) -> None:
    """Kill jobs: each ends Killed (a running build stops within about a second), and
    the jobs that need it fail. Exits 1 if a job could not be killed (unknown, ended)."""
    problems = 0
    with session() as s:
        for job_id in job_ids:
            try:
                result = s.kill_job(job_id)
            except DiracxError as exc:
                err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
                problems += 1
                continue
            line = f"job {job_id} killed"
            if result.failed:
                ids = ", ".join(str(j) for j in result.failed)
                line += f"; the jobs that needed it failed: {ids}"
            console.print(line, highlight=False)
    if problems:
        raise typer.Exit(1)


register_jobs_api(app)  # search, summary, history, reschedule, delete (diracx.cli.jobs_api)
