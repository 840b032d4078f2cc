"""``dirac run FILE.py``: realize the targets a pipeline file declares, with live progress."""

from __future__ import annotations

import importlib.util
import sys
import time
import traceback
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.table import Table

from diracx.api import Instantiated, PipelineResult, Progress
from diracx.cli._common import console, err_console, fail, print_json, session
from diracx.core.matching import PipelinePlan
from diracx.core.models import JobEvent, PipelineInfo

TARGETS_VARIABLE = "targets"
LIVE_ROWS = 40  # above this many stages the live view shows only the active ones

STYLE = {
    "cached": "dim",
    "Done": "green",
    "Failed": "bold red",
    "Killed": "red",
    "Running": "yellow",
    "Matched": "yellow",
    "Waiting": "cyan",
    "Checking": "blue",
}


def load_pipeline_file(path: Path) -> ModuleType:
    """Import the user's file as a module named after it (as the python executor will)."""
    if not path.is_file():
        fail(f"no such file: {path}", 2)
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    try:
        spec.loader.exec_module(module)
    except Exception:
        err_console.print(f"[bold red]error:[/] {path} raised while being loaded:")
        err_console.print(traceback.format_exc(), highlight=False, markup=False)
        raise typer.Exit(2) from None
    return module


class RunProgress(Progress):
    """Draws a live table on a terminal, or prints one line per finished stage."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.live: Live | None = None
        self.names: dict[str, str] = {}
        self.pipeline_id: int | None = None
        self.state: dict[str, str] = {}
        self.started = time.monotonic()

    def instantiated(self, inst: Instantiated) -> None:
        self.names = {d: inst.stages[d].name for d in inst.order}

    def uploading(self, blobs: int, size: int) -> None:
        if not self.quiet:
            console.print(f"uploading {blobs} files ({size / 1e6:.1f} MB)")

    def submitted(self, pipeline: PipelineInfo) -> None:
        self.pipeline_id = pipeline.id
        for s in pipeline.stages:
            self.state[s.dref] = "cached" if s.cached else str(s.status)
        if self.quiet:
            return
        cached = sum(1 for s in pipeline.stages if s.cached)
        console.print(
            f"pipeline {pipeline.id}: {len(pipeline.stages)} stages, {cached} cached, "
            f"{len(pipeline.stages) - cached} to build"
        )
        if console.is_terminal and pipeline.status == "Running":
            self.live = Live(self._table(), console=console, refresh_per_second=8, transient=True)
            self.live.start()

    def event(self, event: JobEvent) -> None:
        self.state[event.dref] = str(event.status)
        if self.quiet:
            return
        if self.live is not None:
            self.live.update(self._table())
        elif event.status in ("Done", "Failed", "Killed"):
            style = STYLE.get(str(event.status), "")
            console.print(f"[{style}]{event.status:>7}[/] {event.name}", highlight=False)

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def _table(self) -> Table:
        table = Table(box=None, show_header=False, pad_edge=False)
        rows = list(self.state.items())
        if len(rows) > LIVE_ROWS:
            rows = [(d, s) for d, s in rows if s in ("Running", "Matched", "Failed")][:LIVE_ROWS]
        for dref, status in rows:
            table.add_row(f"[{STYLE.get(status, '')}]{status}[/]", self.names.get(dref, dref[:12]))
        done = sum(1 for s in self.state.values() if s in ("Done", "cached", "Failed", "Killed"))
        table.caption = (
            f"{done}/{len(self.state)} stages final, {time.monotonic() - self.started:.1f} s"
        )
        return table


def print_summary(result: PipelineResult, elapsed: float) -> None:
    table = Table(
        title=f"pipeline {result.pipeline.id}: {result.pipeline.status} in {elapsed:.2f} s"
    )
    table.add_column("stage")
    table.add_column("result")
    table.add_column("realization")
    for s in sorted(result.stages, key=lambda s: s.name):
        state = "cached" if s.cached else str(s.status)
        table.add_row(s.name, f"[{STYLE.get(state, '')}]{state}[/]", (s.rref or "")[:16])
    if len(result.stages) <= LIVE_ROWS:
        console.print(table)
    console.print(
        f"[bold]{len(result.built())} built, {len(result.cached())} cached, "
        f"{len(result.failed())} failed[/] in {elapsed:.2f} s",
        highlight=False,
    )


PLAN_STYLE = {"reuse": "dim", "build": "yellow", "join": "cyan", "error": "bold red"}


def print_plan(plan: PipelinePlan) -> None:
    """The dry run as a table: every stage, inputs first, reuse or build and why."""
    table = Table(title="dry run: nothing was submitted")
    table.add_column("stage")
    table.add_column("action")
    table.add_column("matcher")
    table.add_column("why", overflow="fold")
    for s in plan.stages:
        style = PLAN_STYLE.get(s.action, "")
        table.add_row(s.name, f"[{style}]{s.action}[/]", s.matcher, s.reason)
    console.print(table)
    errors = f", {plan.errors} in error" if plan.errors else ""
    console.print(f"[bold]{plan.reuse} to reuse, {plan.build} to build{errors}[/]", highlight=False)


def run(
    file: Annotated[Path, typer.Argument(help="a Python file that sets `targets` to its stages")],
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    force: Annotated[
        list[str] | None,
        typer.Option(
            "--force",
            help="build this stage (a name or DRef) again even if cached; may be repeated",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="say for every stage whether it would be reused or built, and why"
        ),
    ] = False,
) -> None:
    """Realize the targets FILE declares: build what is missing, reuse what is cached."""
    module = load_pipeline_file(file.resolve())
    targets: Any = getattr(module, TARGETS_VARIABLE, None)
    if targets is None:
        fail(
            f"{file} sets no `{TARGETS_VARIABLE}`: "
            "assign it the stages to realize, e.g. targets = [release]",
            2,
        )
    forced = list(force or [])
    if dry_run:
        with session() as s:
            plan = s.plan(targets, force=forced)
        if as_json:
            print_json(plan)
        else:
            print_plan(plan)
        return
    started = time.monotonic()
    progress = RunProgress(quiet=as_json)
    with session() as s:
        try:
            _, result = s.run(targets, progress, force=forced)
        except KeyboardInterrupt:
            progress.stop()
            if progress.pipeline_id is None:
                fail("interrupted before the pipeline was submitted", 130)
            fail(
                f"interrupted: pipeline {progress.pipeline_id} goes on in the engine; "
                f"see it with `dirac pipelines show {progress.pipeline_id}`",
                130,
            )
        finally:
            progress.stop()
    elapsed = time.monotonic() - started
    if as_json:
        print_json(result.summary() | {"elapsed": round(elapsed, 4)})
    else:
        print_summary(result, elapsed)
        for name, report in result.failures.items():
            err_console.print(f"[bold red]stage {name} failed:[/] ", end="")
            err_console.print(report, highlight=False, markup=False)
    if not result.ok:
        raise typer.Exit(1)
