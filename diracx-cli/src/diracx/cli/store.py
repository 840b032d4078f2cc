"""``dirac store``: inspect the store, move closures between stores, verify it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree as RichTree

from diracx.cli._common import console, err_console, fail, print_json, session
from diracx.cli.store_gc import register as register_gc
from diracx.core.closure import Provenance, TreeChange

app = typer.Typer(
    help="Inspect the store, move closures between stores, verify it.", no_args_is_help=True
)

RRefArg = Annotated[str, typer.Argument(metavar="RREF", help="a realization's RRef")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover - the loop always returns


@app.command("ls")
def ls(
    rref: Annotated[
        str | None, typer.Argument(metavar="[RREF]", help="list the files of this output")
    ] = None,
    name: Annotated[str | None, typer.Option(help="only the stages called NAME")] = None,
    dref: Annotated[str | None, typer.Option(help="only the realizations of this DRef")] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="at most this many")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Realizations, newest first; or, given an RREF, the files of its output."""
    with session() as s:
        if rref is not None:
            tree = s.store.tree(rref)
            if as_json:
                print_json(tree.manifest())
                return
            table = Table("kind", "size", "digest", "path")
            for path, e in sorted(tree.entries.items()):
                table.add_row(e.kind, str(e.size), (e.digest or "-")[:12], escape(path))
            console.print(table)
            return
        found = s.store.ls(name=name, dref=dref, limit=limit)
    if as_json:
        print_json([r.model_dump(mode="json") for r in found])
        return
    table = Table("created", "name", "rref", "metrics")
    for r in found:
        metrics = ", ".join(f"{k}={v}" for k, v in sorted(r.metrics.items()))
        table.add_row(
            r.created.isoformat(timespec="seconds"), escape(r.name), r.rref, escape(metrics)
        )
    console.print(table)


@app.command("cat")
def cat(rref: RRefArg, path: Annotated[str, typer.Argument(help="a file of the output")]) -> None:
    """Print a file of a realization's output (its bytes, as they are)."""
    with session() as s:
        data = s.store.cat(rref, path)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


@app.command("path")
def path(rref: RRefArg) -> None:
    """Make a read-only local copy of a realization's output; print its path."""
    with session() as s:
        where = s.store.path(rref)
    typer.echo(str(where))


@app.command("du")
def du(
    rrefs: Annotated[
        list[str] | None, typer.Argument(metavar="[RREF...]", help="default: every realization")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Sizes: per realization (output files, tree and log) and in all, shared blobs once."""
    with session() as s:
        report = s.store.du(rrefs or [])
    if as_json:
        print_json(report)
        return
    table = Table("size", "files", "name", "rref")
    for r in report.realizations:
        table.add_row(_size(r.size), str(r.files), escape(r.name), r.rref)
    console.print(table)
    console.print(
        f"total: {_size(report.total)} in {report.blobs} distinct blobs "
        f"({len(report.realizations)} realizations)",
        highlight=False,
    )


def _provenance_tree(prov: Provenance) -> RichTree:
    def label(rref: str) -> str:
        info = prov.realizations[rref]
        return f"[bold]{escape(info.name)}[/] {rref}"

    root = RichTree(label(prov.root))
    shown: set[str] = set()

    def add(node: RichTree, rref: str) -> None:
        info = prov.realizations[rref]
        for input_name, digest in sorted(prov.trees.get(rref, {}).items()):
            node.add(f"{escape(input_name)} <- tree {digest}")
        for input_name, inputs in sorted(info.context.items()):
            for r in inputs:
                child = node.add(f"{escape(input_name)} <- {label(r)}")
                if r in shown:  # a diamond: said once, then referred to
                    child.add("[dim](inputs shown above)[/]")
                    continue
                shown.add(r)
                add(child, r)

    add(root, prov.root)
    return root


@app.command("deps")
def deps(rref: RRefArg, as_json: JsonOpt = False) -> None:
    """Provenance: every input of a realization, and what it was built from, recursively."""
    with session() as s:
        prov = s.store.deps(rref)
    if as_json:
        print_json(prov)
        return
    console.print(_provenance_tree(prov), highlight=False)


@app.command("diff")
def diff(
    old: Annotated[str, typer.Argument(metavar="RREF1")],
    new: Annotated[str, typer.Argument(metavar="RREF2")],
    as_json: JsonOpt = False,
) -> None:
    """Files added (+), removed (-) and changed (~) from one output to the other."""
    with session() as s:
        changes: list[TreeChange] = s.store.diff(old, new)
    if as_json:
        print_json([c.model_dump(mode="json") for c in changes])
        return
    marks = {"added": "+", "removed": "-", "changed": "~"}
    for c in changes:
        typer.echo(f"{marks[c.change]} {c.path}")
    if not changes:
        typer.echo("the outputs are the same")


@app.command("log")
def log(
    ref: Annotated[str, typer.Argument(metavar="RREF|JOB", help="an RRef, or a job id")],
) -> None:
    """Print the build log of a realization or a job."""
    with session() as s:
        text = s.store.log(ref)
    typer.echo(text, nl=not text.endswith("\n"))


@app.command("export")
def export(
    rrefs: Annotated[list[str], typer.Argument(metavar="RREF...")],
    output: Annotated[Path, typer.Option("-o", "--output", help="the archive to write")],
) -> None:
    """Write the closure of realizations (their inputs, derivations, every blob) to a tar."""
    with session() as s, err_console.status("collecting and writing the closure..."):
        closure = s.store.export(rrefs, output)
    console.print(
        f"wrote {escape(str(output))}: {len(closure.realizations)} realizations, "
        f"{len(closure.blobs)} blobs ({_size(sum(closure.blobs.values()))})",
        highlight=False,
    )


@app.command("import")
def import_(archive: Annotated[Path, typer.Argument(metavar="ARCHIVE")]) -> None:
    """Import a closure archive; every digest is checked first, and a tampered archive
    is refused whole."""
    with session() as s, err_console.status(f"checking {archive.name}, then uploading..."):
        done = s.store.import_closure(archive)
    result = done.result
    console.print(
        f"imported {len(result.imported)} realizations ({len(result.existing)} already "
        f"there), uploaded {done.uploaded} blobs ({_size(done.uploaded_bytes)})",
        highlight=False,
    )
    for root in done.roots:
        console.print(f"  {escape(done.names.get(root, '?'))} {root}", highlight=False)


@app.command("verify")
def verify(as_json: JsonOpt = False) -> None:
    """Re-hash every blob of the store; report corrupt and missing ones (exit 1 if any)."""
    with session() as s, err_console.status("re-hashing every blob of the store..."):
        report = s.store.verify()
    if as_json:
        print_json(report)
    else:
        console.print(f"checked {report.checked} blobs ({_size(report.size)})", highlight=False)
        for digest in report.corrupt:
            err_console.print(f"[bold red]corrupt:[/] {escape(digest)}", highlight=False)
        for m in report.missing:
            err_console.print(
                f"[bold red]missing:[/] {m.digest} ({escape(m.needed_by)})", highlight=False
            )
    if not report.ok:
        if not as_json:
            fail(f"{len(report.corrupt)} corrupt and {len(report.missing)} missing blobs")
        raise typer.Exit(1)


register_gc(app)  # pin, unpin, pins, gc (diracx.cli.store_gc)
