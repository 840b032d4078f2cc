"""``dirac jobs search | summary | history | reschedule | delete``: DIRAC's jobs API.

Filters are written as a user says them: ``Status=Failed``, ``Name like train%``,
``cpus>2``, ``queue in gpu,big``, ``worker != w1``, ``Status not in Done,Killed``.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from diracx.cli._common import console, err_console, fail, print_json, session
from diracx.core.exceptions import DiracxError
from diracx.core.job_search import SearchSpec, SortSpec

DEFAULT_COLUMNS = ["id", "name", "status", "minor_status", "queue", "worker", "updated"]
_WORD_OP = re.compile(r"^\s*(\w+)\s+(not\s+in|in|like)\s+(.*?)\s*$", re.IGNORECASE)
_SIGN_OP = re.compile(r"^\s*(\w+)\s*(!=|=|<|>)\s*(.*?)\s*$")
_SIGNS = {"=": "eq", "!=": "neq", "<": "lt", ">": "gt"}


def parse_filter(text: str) -> SearchSpec:
    """``Status=Failed``, ``Name like train%``, ``queue in a,b``... as a search filter."""
    word = _WORD_OP.match(text)
    if word:
        name, op, value = word.group(1), " ".join(word.group(2).lower().split()), word.group(3)
        if op in ("in", "not in"):
            values: list[str | int | float | bool | None] = [
                v.strip() for v in value.split(",") if v.strip()
            ]
            return SearchSpec(parameter=name, operator=op, values=values)
        return SearchSpec(parameter=name, operator=op, value=value)
    sign = _SIGN_OP.match(text)
    if sign:
        return SearchSpec(
            parameter=sign.group(1), operator=_SIGNS[sign.group(2)], value=sign.group(3)
        )
    fail(
        f"cannot read the filter {text!r}: write ATTRIBUTE=VALUE, ATTRIBUTE!=VALUE, "
        "ATTRIBUTE<VALUE, ATTRIBUTE>VALUE, 'ATTRIBUTE like PATTERN', 'ATTRIBUTE in A,B' "
        "or 'ATTRIBUTE not in A,B'"
    )


def parse_sort(text: str) -> SortSpec:
    """``id:desc``, ``-id`` (descending) or ``name`` (ascending)."""
    if text.startswith("-"):
        return SortSpec(parameter=text[1:], direction="desc")
    name, _, direction = text.partition(":")
    return SortSpec(parameter=name, direction=direction or "asc")


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


FilterOpt = Annotated[
    list[str] | None,
    typer.Option("--filter", "-f", help="ATTR=VALUE, 'ATTR like PATTERN', 'ATTR in A,B'..."),
]


def search(
    filters: FilterOpt = None,
    sort: Annotated[
        list[str] | None, typer.Option("--sort", "-s", help="ATTR, ATTR:desc or -ATTR")
    ] = None,
    columns: Annotated[
        list[str] | None, typer.Option("--column", "-c", help="attributes to show")
    ] = None,
    page: Annotated[int, typer.Option(min=1, help="the page, from 1")] = 1,
    per_page: Annotated[int, typer.Option(min=1, max=10_000, help="jobs per page")] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Jobs matching every --filter, newest first unless --sort says otherwise."""
    specs = [parse_filter(f) for f in filters or []]
    order = [parse_sort(s) for s in sort or ["-id"]]
    with session() as s:
        result = s.search_jobs(
            specs,
            sort=order,
            parameters=columns or (None if as_json else DEFAULT_COLUMNS),
            page=page,
            per_page=per_page,
        )
    if as_json:
        print_json(result)
        return
    if not result.jobs:
        console.print("no job matches", highlight=False)
        return
    names = list(result.jobs[0])
    table = Table(*names)
    for row in result.jobs:
        table.add_row(*(escape(_cell(row[n])) for n in names))
    console.print(table)
    last = result.first + len(result.jobs)
    more = f"; --page {page + 1} for more" if last < result.total else ""
    console.print(f"jobs {result.first + 1}-{last} of {result.total}{more}", highlight=False)


def summary(
    group: Annotated[
        list[str], typer.Option("--group", "-g", help="attribute to group by (repeatable)")
    ],
    filters: FilterOpt = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """How many jobs match, per value of the --group attributes."""
    specs = [parse_filter(f) for f in filters or []]
    with session() as s:
        rows = s.job_summary(group, specs)
    if as_json:
        print_json(rows)
        return
    if not rows:
        console.print("no job matches", highlight=False)
        return
    names = list(rows[0])
    table = Table(*names)
    for row in rows:
        table.add_row(*(escape(_cell(row[n])) for n in names))
    console.print(table)
    console.print(f"{sum(r['count'] for r in rows)} jobs", highlight=False)


def history(
    job_id: Annotated[int, typer.Argument(help="the job's id")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A job's status changes, oldest first."""
    with session() as s:
        entries = s.job_history(job_id)
    if as_json:
        print_json([e.model_dump(mode="json") for e in entries])
        return
    table = Table("time", "status", "minor status", "source")
    for h in entries:
        table.add_row(
            h.timestamp.isoformat(timespec="milliseconds"),
            h.status,
            escape(h.minor_status),
            escape(h.source),
        )
    console.print(table)


def _each(job_ids: list[int], action: str, as_json: bool) -> None:
    """Apply *action* (a Session method) to each job; exit 1 if one was refused."""
    problems = 0
    results: list[dict[str, Any]] = []
    with session() as s:
        for job_id in job_ids:
            try:
                result = getattr(s, action)(job_id)
            except DiracxError as exc:
                err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
                problems += 1
                continue
            results.append(result.model_dump(mode="json"))
            if not as_json:
                console.print(
                    f"job {job_id}: {result.status} ({result.minor_status})", highlight=False
                )
    if as_json:
        print_json(results)
    if problems:
        raise typer.Exit(1)


def reschedule(
    job_ids: Annotated[list[int], typer.Argument(metavar="ID...", help="the jobs' ids")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Build Failed, Killed or Stalled jobs again (Waiting, or Checking until their
    inputs are built). Exits 1 if a job could not be rescheduled."""
    _each(job_ids, "reschedule_job", as_json)


def delete(
    job_ids: Annotated[list[int], typer.Argument(metavar="ID...", help="the jobs' ids")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Mark ended jobs (Done, Failed, Killed) Deleted. Exits 1 if a job could not be."""
    _each(job_ids, "delete_job", as_json)


def register(app: typer.Typer) -> None:
    """Add these commands to ``dirac jobs``."""
    app.command("search")(search)
    app.command("summary")(summary)
    app.command("history")(history)
    app.command("reschedule")(reschedule)
    app.command("delete")(delete)
