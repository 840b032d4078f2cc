"""``dirac pipelines``: inspect and kill pipelines."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from diracx.cli._common import console, print_json, session

app = typer.Typer(help="Inspect and kill pipelines.", no_args_is_help=True)


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
    counts = ", ".join(f"{n} {state}" for state, n in sorted(pipeline.counts.items()))
    console.print(f"[bold]pipeline {pipeline.id}[/]: {pipeline.status} ({counts})", highlight=False)
    table = Table("stage", "state", "job", "realization")
    for st in sorted(pipeline.stages, key=lambda st: st.name):
        state = "cached" if st.cached else f"{st.status} {st.minor_status or ''}".strip()
        table.add_row(st.name, state, str(st.job_id or ""), (st.rref or "")[:16])
    console.print(table)


@app.command("kill")
def kill(pipeline_id: Annotated[int, typer.Argument(help="the pipeline's id")]) -> None:
    """Kill every live job of a pipeline: they end Killed, running builds stop within
    about a second. Exits 1 if the pipeline is unknown or has no live job."""
    with session() as s:
        result = s.kill_pipeline(pipeline_id)
    line = f"pipeline {pipeline_id} killed: {len(result.killed)} jobs killed"
    if result.failed:
        ids = ", ".join(str(j) for j in result.failed)
        line += f"; jobs of other pipelines that needed them failed: {ids}"
    console.print(line, highlight=False)
