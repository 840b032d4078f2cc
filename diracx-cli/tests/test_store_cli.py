"""``dirac store`` as a user runs it: real subprocesses, a real DiracX (embedded, then
distributed), and a second, fresh embedded engine that ``dirac`` starts on demand to
import into."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diracx.core.closure import MANIFEST_NAME
from diracx.testing.distributed import DistributedService
from diracx.testing.engine import EngineProcess, stop_engine_in

pytestmark = pytest.mark.timeout(240)
Service = EngineProcess | DistributedService
UNKNOWN = "f" * 64

PIPELINE = """
from diracx.api import command

SALT = {salt!r}
base = command("base", ["sh", "-c", "echo building base; echo {word} > $OUT/base.txt"],
               config={{"salt": SALT}})
left = command("left", ["sh", "-c", "echo same > $OUT/shared.txt; cp $IN_BASE/base.txt $OUT/"],
               inputs={{"base": base}}, config={{"salt": SALT}})
right = command("right", ["sh", "-c", "echo same > $OUT/shared.txt; echo r > $OUT/r.txt"],
                inputs={{"base": base}}, config={{"salt": SALT}})
top = command("top", ["sh", "-c", "echo top says hi; cat $IN_LEFT/base.txt > $OUT/top.txt"],
              inputs={{"left": left, "right": right}}, config={{"salt": SALT}})
targets = [top]
"""


def dirac(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1", "TERM": "dumb", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "diracx.cli", *args],
        capture_output=True,
        text=True,
        env={k: v for k, v in full.items() if v},
        timeout=120,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    return proc.stdout


def refused(proc: subprocess.CompletedProcess[str], message: str) -> None:
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "Traceback" not in out, out
    assert message in " ".join(proc.stderr.split()), out


@pytest.fixture(scope="module")
def built(module_service: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The pipeline, run once for the module: stage name -> RRef."""
    path = tmp_path_factory.mktemp("pipeline") / "store_pipeline.py"
    path.write_text(textwrap.dedent(PIPELINE.format(salt=uuid.uuid4().hex, word="hello")))
    summary = json.loads(ok(dirac("run", "--json", str(path))))
    assert summary["status"] == "Done"
    rrefs = {}
    for name in ("base", "left", "right", "top"):
        (newest, *_) = json.loads(ok(dirac("store", "ls", "--json", "--name", name)))
        rrefs[name] = newest["rref"]
    (target,) = summary["targets"].values()
    assert target["rref"] == rrefs["top"]
    return rrefs


def test_ls_cat_path(built: dict[str, str]) -> None:
    listing = ok(dirac("store", "ls", "--limit", "10000"))
    assert built["top"] in listing and built["base"] in listing
    files = ok(dirac("store", "ls", built["left"]))
    assert "base.txt" in files and "shared.txt" in files
    assert ok(dirac("store", "cat", built["top"], "top.txt")) == "hello\n"
    assert ok(dirac("store", "cat", built["top"][:12], "top.txt")) == "hello\n"  # a prefix
    where = Path(ok(dirac("store", "path", built["left"])).strip())
    assert (where / "base.txt").read_text() == "hello\n"
    assert ok(dirac("store", "path", built["left"])).strip() == str(where)

    refused(dirac("store", "cat", built["top"], "nope.txt"), "no such file")
    refused(dirac("store", "cat", UNKNOWN, "x"), f"realization {UNKNOWN} does not exist")
    refused(dirac("store", "ls", UNKNOWN), f"realization {UNKNOWN} does not exist")
    refused(dirac("store", "path", "abc"), "not an RRef")


def test_du_deps_diff_log(built: dict[str, str]) -> None:
    du = json.loads(ok(dirac("store", "du", "--json", built["left"], built["right"])))
    sizes = {r["name"]: r["size"] for r in du["realizations"]}
    assert du["total"] == sizes["left"] + sizes["right"] - len("same\n")  # shared blob once
    assert "total:" in ok(dirac("store", "du"))

    tree = ok(dirac("store", "deps", built["top"]))
    for name in ("base", "left", "right", "top"):
        assert built[name] in tree
    assert "(inputs shown above)" in tree  # base is reached twice
    prov = json.loads(ok(dirac("store", "deps", "--json", built["top"])))
    assert prov["root"] == built["top"] and len(prov["realizations"]) == 4

    diff = ok(dirac("store", "diff", built["left"], built["right"]))
    assert diff.splitlines() == ["- base.txt", "+ r.txt"]
    assert "the outputs are the same" in ok(dirac("store", "diff", built["top"], built["top"]))

    assert "top says hi" in ok(dirac("store", "log", built["top"]))
    refused(dirac("store", "log", UNKNOWN), "does not exist")
    refused(dirac("store", "log", "not-a-ref"), "not an RRef")
    refused(dirac("store", "du", UNKNOWN), "does not exist")
    refused(dirac("store", "deps", UNKNOWN), "does not exist")
    refused(dirac("store", "diff", built["top"], UNKNOWN), "does not exist")


@pytest.fixture
def fresh_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A fresh data directory: ``dirac`` starts an embedded engine there on demand."""
    data = tmp_path / "fresh"
    data.mkdir()
    try:
        yield {"DIRACX_DATA_DIR": str(data), "DIRACX_URL": "", "DIRACX_TOKEN": ""}
    finally:
        stop_engine_in(data)


def retar(src: Path, dest: Path, change: Any) -> None:
    with tarfile.open(src) as tin, tarfile.open(dest, "w") as tout:
        for member in tin:
            f = tin.extractfile(member)
            assert f is not None
            data = change(member.name, f.read())
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            tout.addfile(info, io.BytesIO(data))


def test_export_import_verify(
    built: dict[str, str], fresh_env: dict[str, str], tmp_path: Path
) -> None:
    archive = tmp_path / "closure.tar"
    out = ok(dirac("store", "export", built["top"], "-o", str(archive)))
    assert "4 realizations" in out
    refused(dirac("store", "export", UNKNOWN, "-o", str(tmp_path / "x.tar")), "does not exist")
    assert not (tmp_path / "x.tar").exists()
    missing_dir = tmp_path / "no" / "such" / "dir.tar"
    refused(dirac("store", "export", built["top"], "-o", str(missing_dir)), "cannot write")

    # tampered: one byte of one blob, or one manifest entry; nothing is imported
    def flip(name: str, data: bytes) -> bytes:
        if name.startswith("blobs/") and data:
            return bytes([data[0] ^ 1]) + data[1:]
        return data

    def other_dref(name: str, data: bytes) -> bytes:
        if name != MANIFEST_NAME:
            return data
        doc = json.loads(data)
        doc["realizations"][0]["dref"] = doc["realizations"][1]["dref"]
        return json.dumps(doc).encode()

    for change in (flip, other_dref):
        bad = tmp_path / f"{change.__name__}.tar"
        retar(archive, bad, change)
        refused(dirac("store", "import", str(bad), env=fresh_env), "tampered with")
    assert json.loads(ok(dirac("store", "ls", "--json", env=fresh_env))) == []
    refused(dirac("store", "import", str(tmp_path / "none.tar"), env=fresh_env), "no archive")

    out = ok(dirac("store", "import", str(archive), env=fresh_env))
    assert "imported 4 realizations (0 already there)" in out and built["top"] in out
    listed = json.loads(ok(dirac("store", "ls", "--json", env=fresh_env)))
    assert {r["rref"] for r in listed} == set(built.values())
    assert ok(dirac("store", "cat", built["top"], "top.txt", env=fresh_env)) == "hello\n"
    assert "checked" in ok(dirac("store", "verify", env=fresh_env))

    # a corrupt blob: verify names it and exits 1, reading it is a clear error
    store = Path(fresh_env["DIRACX_DATA_DIR"]) / "store" / "blobs"
    tree = json.loads(ok(dirac("store", "ls", "--json", built["right"], env=fresh_env)))
    digest = tree["entries"]["r.txt"]["digest"]
    blob = store / digest[:2] / digest[2:]
    blob.chmod(0o644)
    blob.write_bytes(b"R\n")
    proc = dirac("store", "verify", env=fresh_env)
    refused(proc, "1 corrupt and 0 missing blobs")
    assert f"corrupt: {digest}" in proc.stderr
    refused(dirac("store", "cat", built["right"], "r.txt", env=fresh_env), "is corrupt")
    report = json.loads(dirac("store", "verify", "--json", env=fresh_env).stdout)
    assert report["corrupt"] == [digest]
