"""The committed generated client is what ``make client`` produces from today's routes.

If this fails, a route, a model or the generator's settings changed without the client
being regenerated: run ``make client`` and commit ``diracx-client/src/diracx/client/_generated``.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "generate_client.py"
COMMITTED = ROOT / "diracx-client" / "src" / "diracx" / "client" / "_generated"

MAX_DIFF_LINES = 200  # of the whole report: enough to see what changed, not a wall of text
IGNORED_PARTS = frozenset({"__pycache__", ".ruff_cache", ".mypy_cache", ".pytest_cache"})


@cache
def generator() -> ModuleType:
    """``scripts/generate_client.py``, imported by path (``scripts/`` is not a package)."""
    spec = importlib.util.spec_from_file_location("diracx_generate_client", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def files_of(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under *root* (caches and bytecode left out)."""
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file()
        and not IGNORED_PARTS.intersection(path.relative_to(root).parts)
        and path.suffix not in {".pyc", ".pyo"}
    }


def tree_diff(expected: Path, actual: Path, *, expected_label: str, actual_label: str) -> str:
    """A readable unified diff of two directories ("" if they are identical), truncated."""
    old, new = files_of(expected), files_of(actual)
    lines: list[str] = []
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        if a is None:
            lines.append(f"only in {actual_label}: {name}")
        elif b is None:
            lines.append(f"only in {expected_label}: {name}")
        lines.extend(
            line.rstrip("\n")
            for line in difflib.unified_diff(
                (a or b"").decode(errors="replace").splitlines(keepends=True),
                (b or b"").decode(errors="replace").splitlines(keepends=True),
                fromfile=f"{expected_label}/{name}" if a is not None else "/dev/null",
                tofile=f"{actual_label}/{name}" if b is not None else "/dev/null",
                n=2,
            )
        )
    if len(lines) > MAX_DIFF_LINES:
        hidden = len(lines) - MAX_DIFF_LINES
        lines = [*lines[:MAX_DIFF_LINES], f"... ({hidden} more lines of diff not shown)"]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def generate() -> Callable[[Path], None]:
    fn: Callable[[Path], None] = generator().generate
    return fn


@pytest.fixture(scope="module")
def fresh(generate: Callable[[Path], None], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A client generated now from the installed routes."""
    out = tmp_path_factory.mktemp("fresh") / "_generated"
    generate(out)
    return out


def test_committed_client_is_up_to_date(fresh: Path) -> None:
    assert COMMITTED.is_dir(), f"{COMMITTED} is missing: run `make client`"
    diff = tree_diff(COMMITTED, fresh, expected_label="committed", actual_label="freshly generated")
    if diff:
        pytest.fail(
            "the committed generated client differs from a fresh generation: run `make client` "
            "and commit diracx-client/src/diracx/client/_generated\n\n" + diff,
            pytrace=False,
        )


def test_generation_is_deterministic(
    fresh: Path, generate: Callable[[Path], None], tmp_path: Path
) -> None:
    again = tmp_path / "_generated"
    generate(again)
    diff = tree_diff(fresh, again, expected_label="first run", actual_label="second run")
    assert not diff, "two generations from the same routes differ:\n" + diff


def test_generation_does_not_depend_on_the_machine(fresh: Path) -> None:
    """No absolute path, no temporary directory, no package version, no date."""
    from diracx.core.version import __version__

    home = str(Path.home())
    suspicious = {
        "the repository path": str(ROOT),
        "the home directory": home if home not in ("/", "") else None,
        "a temporary directory": "/tmp/",
    }
    suspicious |= {  # quoted, so that a short version number cannot match by accident
        f"the installed diracx version ({q}{__version__}{q})": f"{q}{__version__}{q}" for q in "'\""
    }
    date = re.compile(rb"\b20\d\d-[01]\d-[0-3]\d\b")
    problems = []
    for name, data in files_of(fresh).items():
        text = data.decode(errors="replace")
        problems += [f"{name}: {what}" for what, s in suspicious.items() if s and s in text]
        if date.search(data):
            problems.append(f"{name}: a date")
    assert not problems, "the generated client holds machine-specific text:\n" + "\n".join(problems)


def test_the_generated_package_is_only_the_package(fresh: Path) -> None:
    """``--meta none``: no pyproject, README or .gitignore inside diracx.client."""
    names = set(files_of(fresh))
    assert {"__init__.py", "client.py", "errors.py", "types.py"} <= names
    assert all(n.endswith(".py") for n in names), sorted(n for n in names if not n.endswith(".py"))


def test_a_changed_route_is_noticed(
    fresh: Path,
    generate: Callable[[Path], None],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check would catch a route added (or changed) without regenerating the client."""
    from diracx.routers import factory
    from diracx.routers.auth import PublicAccess
    from diracx.routers.routing import DiracxRouter

    extra = DiracxRouter(policy=PublicAccess(), prefix="/probe", tags=["probe"])

    @extra.get("/{name}")
    async def probe_something(name: str, deep: bool = False) -> dict[str, str]:
        return {"name": name}

    real_load_routers = factory.load_routers
    monkeypatch.setattr(factory, "load_routers", lambda: {**real_load_routers(), "probe": extra})
    changed = tmp_path / "_generated"
    generate(changed)
    diff = tree_diff(fresh, changed, expected_label="committed", actual_label="fresh")
    assert "only in fresh: api/probe/probe_something.py" in diff
    assert '"url": "/api/probe/{name}"' in diff


def test_tree_diff_is_readable(tmp_path: Path) -> None:
    """The report names the differing files, shows a unified diff, and stays short."""
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "api").mkdir(parents=True)
    (b / "api").mkdir(parents=True)
    (a / "same.py").write_text("x = 1\n")
    (b / "same.py").write_text("x = 1\n")
    (a / "api" / "changed.py").write_text("def f():\n    return 1\n")
    (b / "api" / "changed.py").write_text("def f():\n    return 2\n")
    (a / "gone.py").write_text("old\n")
    (b / "new.py").write_text("\n".join(f"line {i}" for i in range(1000)))
    (b / "__pycache__").mkdir()
    (b / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")

    report = tree_diff(a, b, expected_label="committed", actual_label="fresh")
    assert "same.py" not in report and "__pycache__" not in report
    assert "--- committed/api/changed.py" in report
    assert "+++ fresh/api/changed.py" in report
    assert "-    return 1" in report and "+    return 2" in report
    assert "only in committed: gone.py" in report
    assert "only in fresh: new.py" in report
    assert len(report.splitlines()) == MAX_DIFF_LINES + 1
    assert report.splitlines()[-1].endswith("more lines of diff not shown)")
    assert tree_diff(a, a, expected_label="x", actual_label="y") == ""
