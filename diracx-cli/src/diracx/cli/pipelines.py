"""``dirac pipelines list | show | cancel | retry`` (and ``kill``, cancel's former name)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from diracx.cli._common import console, fail, print_json, session
from diracx.core.models import KillResponse, PipelineState

app = typer.Typer(help="List, inspect, cancel and retry pipelines.", no_args_is_help=True)
STATES: dict[str, PipelineState] = {"running": "Running", "done": "Done", "failed": "Failed"}


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


@app.command("list")
def list_(
    limit: Annotated[int, typer.Option(min=1, max=500, help="pipelines per page")] = 50,
    cursor: Annotated[
        int | None, typer.Option(min=1, help="the next page: the cursor the last one printed")
    ] = None,
    owner: Annotated[str | None, typer.Option(help="only this user's")] = None,
    status: Annotated[str | None, typer.Option(help="only those running, done or failed")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Your VO's pipelines, newest first, with how many stages are in each state."""
    state = None
    if status is not None:
        state = STATES.get(status.lower())
        if state is None:
            fail(f"unknown status {status!r}: use running, done or failed")
    with session() as s:
        page = s.list_pipelines(limit=limit, cursor=cursor, owner=owner, status=state)
    if as_json:
        print_json(page)
        return
    if not page.pipelines:
        console.print("no pipeline", highlight=False)
        return
    table = Table("id", "owner", "created", "status", "targets", "stages")
    for p in page.pipelines:
        table.add_row(
            str(p.id),
            escape(p.owner),
            p.created.isoformat(timespec="seconds"),
            p.status,
            str(p.target_count),
            _counts(p.counts),
        )
    console.print(table)
    if page.next_cursor is not None:
        console.print(f"more: --cursor {page.next_cursor}", highlight=False)


@app.command("show")
def show(
    pipeline_id: Annotated[int, typer.Argument(help="the pipeline's id")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A pipeline with the state of each of its stages."""
    with session() as s:
        pipeline = s.pipeline(pipeline_id)
    if as_json:
        print_json(pipeline)
        return
    counts = _counts(pipeline.counts)
    console.print(f"[bold]pipeline {pipeline.id}[/]: {pipeline.status} ({counts})", highlight=False)
    table = Table("stage", "state", "job", "realization")
    for st in sorted(pipeline.stages, key=lambda st: st.name):
        state = "cached" if st.cached else f"{st.status} {st.minor_status or ''}".strip()
        table.add_row(st.name, state, str(st.job_id or ""), (st.rref or "")[:16])
    console.print(table)


def _print_kill(pipeline_id: int, result: KillResponse) -> None:
    line = f"pipeline {pipeline_id} killed: {len(result.killed)} jobs killed"
    if result.failed:
        ids = ", ".join(str(j) for j in result.failed)
        line += f"; jobs of other pipelines that needed them failed: {ids}"
    console.print(line, highlight=False)


PipelineArg = Annotated[int, typer.Argument(help="the pipeline's id")]


@app.command("cancel")
def cancel(
    pipeline_id: PipelineArg, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Cancel a pipeline: kill every live job of it (they end Killed, running builds stop
    within about a second). Exits 1 if the pipeline is unknown or has no live job."""
    with session() as s:
        result = s.cancel_pipeline(pipeline_id)
    if as_json:
        print_json(result)
        return
    _print_kill(pipeline_id, result)


@app.command("kill")
def kill(pipeline_id: PipelineArg) -> None:
    """The same as cancel (its former name)."""
    with session() as s:
        result = s.kill_pipeline(pipeline_id)
    _print_kill(pipeline_id, result)


@app.command("retry")
def retry(
    pipeline_id: PipelineArg, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Build a pipeline's failed and killed jobs again, and the stages that failed because
    of them (Waiting, or Checking until their inputs are built). Exits 1 if none can be."""
    with session() as s:
        result = s.retry_pipeline(pipeline_id)
    if as_json:
        print_json(result)
        return
    table = Table("job", "stage", "status")
    for job in result.retried:
        table.add_row(str(job.id), escape(job.name), job.status)
    console.print(f"pipeline {pipeline_id}: {len(result.retried)} jobs retried", highlight=False)
    console.print(table)
    for job_id, why in sorted(result.skipped.items()):
        console.print(f"job {job_id} left as it is: {escape(why)}", highlight=False)
