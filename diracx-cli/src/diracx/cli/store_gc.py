"""``dirac store pin | unpin | pins | gc``: the roots of garbage collection, and collecting.

``register`` adds them to the ``dirac store`` group (``diracx.cli.store``).
"""

from __future__ import annotations

import re
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from diracx.cli._common import console, fail, print_json, session
from diracx.core.gc import DEFAULT_GRACE_SECONDS, DEFAULT_KEEP_DAYS, check_pin_name

SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b?)\s*\Z", re.IGNORECASE)
POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}

NameArg = Annotated[str, typer.Argument(metavar="NAME", help="the pin's name")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def parse_size(text: str) -> int:
    """Bytes from ``123``, ``500M``, ``1.5GiB``, ``10GB``... (K, M, G: powers of 1024)."""
    match = SIZE_RE.match(text)
    if not match:
        raise typer.BadParameter(f"{text!r} is not a size: write e.g. 500M, 10G or 1073741824")
    number, unit, _ = match.groups()
    return int(float(number) * 1024 ** POWERS[unit.lower()])


def human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


def pin(
    name: NameArg,
    rref: Annotated[
        str,
        typer.Argument(metavar="RREF", help="the realization to pin (or a unique prefix)"),
    ],
) -> None:
    """Name a realization: it and its whole closure (inputs, trees, logs) are never
    garbage collected. A name that named another realization now names this one."""
    try:
        check_pin_name(name)
    except ValueError as exc:
        fail(str(exc))
    with session() as s:
        info = s.pin(name, rref)
    console.print(f"pinned {escape(info.name)} -> {info.stage} {info.rref}", highlight=False)


def unpin(name: NameArg) -> None:
    """Remove a pin; what it named goes at the next collection if nothing else needs it."""
    with session() as s:
        info = s.unpin(name)
    console.print(f"unpinned {escape(info.name)} (was {info.stage} {info.rref})", highlight=False)


def pins(as_json: JsonOpt = False) -> None:
    """The pins, by name."""
    with session() as s:
        found = s.pins()
    if as_json:
        print_json([p.model_dump(mode="json") for p in found])
        return
    table = Table("name", "stage", "rref", "pinned")
    for p in found:
        table.add_row(escape(p.name), p.stage, p.rref, p.created.isoformat(timespec="seconds"))
    console.print(table)


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="only list what would go, and how much space")
    ] = False,
    keep_days: Annotated[
        float,
        typer.Option(
            "--keep-days", min=0, help="pipelines younger than this keep all they used (days)"
        ),
    ] = DEFAULT_KEEP_DAYS,
    target_size: Annotated[
        str | None,
        typer.Option(
            "--target-size",
            metavar="SIZE",
            help="stop once the store holds at most SIZE (500M, 10G...); oldest goes first",
        ),
    ] = None,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            min=0,
            help="seconds: objects younger than this always stay (uploads, builds in flight)",
        ),
    ] = DEFAULT_GRACE_SECONDS,
    as_json: JsonOpt = False,
) -> None:
    """Remove the realizations and blobs that no pin, no pipeline younger than
    --keep-days and no queued or running job needs."""
    target = parse_size(target_size) if target_size is not None else None
    with session() as s:
        report = s.collect_garbage(
            dry_run=dry_run, keep_days=keep_days, target_size=target, grace_seconds=grace
        )
    if as_json:
        print_json(report)
        return
    verb = "would remove" if dry_run else "removed"
    for r in report.realizations:
        console.print(
            f"{verb} realization {r.rref} ({r.stage}, {r.created.isoformat(timespec='seconds')})",
            highlight=False,
        )
    console.print(
        f"{verb} {len(report.realizations)} realizations and {len(report.blobs)} blobs: "
        f"{human(report.freed)} of {human(report.store_size)}; kept "
        f"{report.kept_realizations} realizations and {report.kept_blobs} blobs",
        highlight=False,
    )
    if not report.target_met:
        left = report.store_size - report.freed
        fail(
            f"the store still holds {human(left)}, over the target {human(target or 0)}: "
            "the rest is pinned, used by a recent pipeline or a live job, or too young"
        )


def register(app: typer.Typer) -> None:
    """Add the commands to *app* (``dirac store``)."""
    app.command("pin")(pin)
    app.command("unpin")(unpin)
    app.command("pins")(pins)
    app.command("gc")(gc)
