"""Lint, test, document and package a small Python project in parallel, then release it.

    dirac run examples/release_pipeline/pipeline.py

Four stages read the project's sources and run side by side; the release stage
uses all four results. Run it twice: the second run reuses every result and
starts no job. Change a test and only `test` and `release` run again.
"""

from __future__ import annotations

from pathlib import Path

from diracx.api import command, host_dir, stage

HERE = Path(__file__).resolve().parent
VERSION = "1.0.0"

# The project, sent to the engine as a tree (only the files it lacks are uploaded).
sources = host_dir(HERE / "project", exclude=["__pycache__", "*.pyc", "*.egg-info"])


@stage
def lint(src: Path, out: Path, max_line_length: int = 100) -> dict:
    """Every module parses, lines are short and free of trailing blanks, imports are used."""
    import ast

    problems = []
    files = sorted(src.rglob("*.py"))
    for path in files:
        rel = path.relative_to(src)
        text = path.read_text()
        tree = ast.parse(text, filename=str(rel))
        for number, line in enumerate(text.splitlines(), 1):
            if len(line) > max_line_length:
                problems.append(f"{rel}:{number}: line longer than {max_line_length}")
            if line != line.rstrip():
                problems.append(f"{rel}:{number}: trailing whitespace")
        imported = {
            (alias.asname or alias.name).split(".")[0]: node.lineno
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            and getattr(node, "module", None) != "__future__"
            for alias in node.names
        }
        used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        for name, number in imported.items():
            if name not in used:
                problems.append(f"{rel}:{number}: {name!r} imported but unused")
    (out / "lint.txt").write_text("".join(f"{p}\n" for p in problems) or "no problems\n")
    if problems:
        print("\n".join(problems))
        raise SystemExit(f"lint found {len(problems)} problems")
    return {"files": len(files), "problems": 0}


@stage
def test(src: Path, out: Path) -> dict:
    """Run the project's unit tests against its sources."""
    import io
    import sys
    import unittest

    sys.dont_write_bytecode = True  # the inputs are read-only
    sys.path.insert(0, str(src / "src"))
    suite = unittest.defaultTestLoader.discover(
        str(src / "tests"), top_level_dir=str(src / "tests")
    )
    report = io.StringIO()
    result = unittest.TextTestRunner(stream=report, verbosity=2).run(suite)
    (out / "test-report.txt").write_text(report.getvalue())
    print(report.getvalue())
    if not result.wasSuccessful():
        raise SystemExit(f"{len(result.failures) + len(result.errors)} tests failed")
    return {"tests": result.testsRun}


@stage
def docs(src: Path, out: Path, title: str = "tinystats API") -> dict:
    """An API reference in Markdown, from the docstrings."""
    import ast

    lines = [f"# {title}", ""]
    functions = 0
    for path in sorted((src / "src").rglob("*.py")):
        tree = ast.parse(path.read_text())
        lines += [f"## `{path.parent.name}`", "", ast.get_docstring(tree) or "", ""]
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
                functions += 1
                args = ", ".join(a.arg for a in node.args.args)
                lines += [f"### `{node.name}({args})`", "", ast.get_docstring(node) or "", ""]
    (out / "API.md").write_text("\n".join(lines))
    return {"functions": functions}


# A reproducible source archive: fixed order, owners and times, gzip without a timestamp.
package = command(
    "package",
    [
        "sh",
        "-c",
        'tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$IN_SRC" -cf - . '
        '| gzip -n > "$OUT/tinystats-$VERSION.tar.gz"',
    ],
    inputs={"src": sources},
    env={"VERSION": VERSION},
)

release = command(
    "release",
    [
        "sh",
        "-c",
        'set -e; cp "$IN_DIST"/*.tar.gz "$IN_DOCS/API.md" "$OUT"/; '
        'cd "$OUT"; sha256sum *.tar.gz API.md > SHA256SUMS; '
        '{ echo "tinystats $VERSION"; tail -n 1 "$IN_TESTS/test-report.txt"; '
        'cat "$IN_LINT/lint.txt"; } > RELEASE.txt; cat RELEASE.txt SHA256SUMS',
    ],
    inputs={
        "lint": lint(src=sources),
        "tests": test(src=sources),
        "docs": docs(src=sources),
        "dist": package,
    },
    env={"VERSION": VERSION},
)

targets = [release]
