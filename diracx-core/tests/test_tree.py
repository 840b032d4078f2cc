"""Trees: directories as data; names and modes are hashed; unsafe manifests are refused."""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from pathlib import Path

import pytest

import diracx.core.tree as tree_module
from diracx.core.canonical import canonical_json, sha256_hex
from diracx.core.exceptions import CorruptObjectError, InvalidTreeError
from diracx.core.store import LocalStore
from diracx.core.tree import (
    Tree,
    TreeEntry,
    ingest_directory,
    load_tree,
    make_writable,
    materialize_tree,
)

D1 = "1" * 64
D2 = "2" * 64


def make_sample(root: Path) -> Path:
    """A directory with every kind of entry a tree can hold."""
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "mod.py").write_text("print('hi')\n")
    (root / "README").write_text("read me\n")
    (root / "bin").mkdir()
    (root / "bin" / "run").write_text("#!/bin/sh\necho run\n")
    os.chmod(root / "bin" / "run", 0o755)
    (root / "data.bin").write_bytes(bytes(range(256)) * 100)
    (root / "empty-file").write_bytes(b"")
    (root / "empty").mkdir()
    (root / "deep" / "er" / "empty").mkdir(parents=True)
    os.symlink("src/pkg/mod.py", root / "link")
    os.symlink("../README", root / "bin" / "readme-link")
    os.symlink("/nonexistent/target", root / "dangling")
    return root


def describe(root: Path) -> dict[str, tuple[str, object]]:
    """What a tree must preserve of a directory: kinds, contents, exec bits, link targets."""
    found: dict[str, tuple[str, object]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if stat.S_ISLNK(st.st_mode):
                found[rel] = ("symlink", os.readlink(path))
            elif stat.S_ISDIR(st.st_mode):
                found[rel] = ("dir", None)
            else:
                found[rel] = ("file", (path.read_bytes(), bool(st.st_mode & 0o100)))
    return found


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    root = tmp_path / "sample"
    root.mkdir()
    return make_sample(root)


# -- round trip ---------------------------------------------------------------------------------


def test_ingest_materialize_round_trip(store: LocalStore, sample: Path, tmp_path: Path) -> None:
    tree = ingest_directory(store, sample)
    out = tmp_path / "out"
    materialize_tree(store, tree, out)
    assert describe(out) == describe(sample)
    assert ingest_directory(store, out).digest == tree.digest  # the same tree again
    make_writable(out)


def test_tree_entries(store: LocalStore, sample: Path) -> None:
    tree = ingest_directory(store, sample)
    e = tree.entries
    assert e["README"] == TreeEntry("file", sha256_hex(b"read me\n"), 8)
    assert e["bin/run"].kind == "executable"
    assert e["bin/run"].mode == 0o755
    assert e["README"].mode == 0o644
    assert e["link"] == TreeEntry("symlink", sha256_hex(b"src/pkg/mod.py"), len("src/pkg/mod.py"))
    assert e["empty"] == TreeEntry("directory")
    assert e["deep/er/empty"] == TreeEntry("directory")
    assert "deep" not in e  # non-empty directories are implied by their contents
    assert "src/pkg" not in e
    assert e["empty-file"].size == 0
    for entry in e.values():
        if entry.digest is not None:
            assert store.has(entry.digest)


def test_manifest_is_a_blob_and_its_digest_is_the_tree_digest(
    store: LocalStore, sample: Path
) -> None:
    tree = ingest_directory(store, sample)
    manifest = tree.manifest()
    assert manifest["version"] == 1
    assert tree.manifest_bytes() == canonical_json(manifest)
    assert tree.digest == sha256_hex(tree.manifest_bytes())
    assert store.read_bytes(tree.digest) == tree.manifest_bytes()
    assert load_tree(store, tree.digest) == tree
    assert Tree.from_bytes(tree.manifest_bytes()).digest == tree.digest


def test_empty_tree(store: LocalStore, tmp_path: Path) -> None:
    (tmp_path / "nothing").mkdir()
    tree = ingest_directory(store, tmp_path / "nothing")
    assert tree.entries == {}
    materialize_tree(store, tree, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_digest_ignores_timestamps_and_creation_order(store: LocalStore, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_text("x")
    (a / "y").write_text("y")
    (b / "y").write_text("y")
    (b / "x").write_text("x")
    os.utime(b / "x", (0, 0))
    assert ingest_directory(store, a).digest == ingest_directory(store, b).digest


def test_ingest_move_consumes_the_files(store: LocalStore, sample: Path, tmp_path: Path) -> None:
    before = describe(sample)
    tree = ingest_directory(store, sample, move=True)
    assert not (sample / "README").exists()
    assert not (sample / "bin" / "run").exists()
    out = tmp_path / "out"
    materialize_tree(store, tree, out)
    assert describe(out) == before


def test_ingest_exclude(store: LocalStore, sample: Path) -> None:
    tree = ingest_directory(store, sample, exclude=frozenset({"README", "src"}))
    assert "README" not in tree.entries
    assert not any(p.startswith("src/") for p in tree.entries)
    assert "bin/run" in tree.entries


def test_ingest_refuses_special_files(store: LocalStore, tmp_path: Path) -> None:
    root = tmp_path / "fifo"
    root.mkdir()
    os.mkfifo(root / "pipe")
    with pytest.raises(InvalidTreeError, match="pipe"):
        ingest_directory(store, root)


def make_outputs(root: Path) -> dict[str, bytes]:
    """Many small files in several directories, a few large ones and an empty directory."""
    contents: dict[str, bytes] = {}
    for d in range(6):
        for i in range(40):
            contents[f"d{d}/sub/f{i}"] = f"{d}-{i}".encode() * (i + 1)
    for i in range(3):
        contents[f"large/part-{i}"] = bytes([i]) * ((2 + i) << 20)
    for path, data in contents.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    (root / "empty").mkdir()
    return contents


@pytest.mark.parametrize("move", [False, True])
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_ingest_on_threads_stores_every_file_once(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, threads: int, move: bool
) -> None:
    monkeypatch.setattr(tree_module, "INGEST_THREADS", threads)
    root = tmp_path / "out"
    contents = make_outputs(root)
    tree = ingest_directory(store, root, move=move)
    assert set(tree.entries) == {*contents, "empty"}
    for path, data in contents.items():
        assert tree.entries[path] == TreeEntry("file", sha256_hex(data), len(data))
    assert store.read_bytes(tree.digest) == tree.manifest_bytes()
    assert sorted(p.name for p in root.rglob("*") if p.is_file()) == (
        [] if move else sorted(Path(p).name for p in contents)
    )


def test_a_failing_file_stops_the_ingest(
    store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "out"
    make_outputs(root)
    real_put_file = store.put_file

    def put_file(path: str, *, move: bool = False) -> tuple[str, int]:
        if path.endswith("d3/sub/f7"):
            raise OSError(5, "Input/output error", path)
        return real_put_file(path, move=move)

    monkeypatch.setattr(store, "put_file", put_file)
    with pytest.raises(OSError, match="Input/output error"):
        ingest_directory(store, root, move=True)
    # no helper left behind
    assert not [t for t in threading.enumerate() if t.name.startswith("diracx-ingest")]


# -- names and modes are hashed -----------------------------------------------------------------


def digest_after(store: LocalStore, sample: Path, change: object) -> str:
    assert callable(change)
    change(sample)
    return ingest_directory(store, sample).digest


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda r: (r / "README").rename(r / "README.txt"), id="rename-file"),
        pytest.param(lambda r: os.chmod(r / "README", 0o755), id="chmod+x"),
        pytest.param(lambda r: os.chmod(r / "bin" / "run", 0o644), id="chmod-x"),
        pytest.param(lambda r: (r / "README").write_text("read me!\n"), id="content"),
        pytest.param(lambda r: (r / "empty").rename(r / "vacant"), id="rename-empty-dir"),
        pytest.param(lambda r: (r / "empty").rmdir(), id="remove-empty-dir"),
        pytest.param(lambda r: (r / "src").rename(r / "lib"), id="rename-dir"),
        pytest.param(lambda r: (r / "empty" / "new").write_bytes(b""), id="add-empty-file"),
        pytest.param(
            lambda r: ((r / "link").unlink(), os.symlink("README", r / "link")), id="symlink-target"
        ),
        pytest.param(
            lambda r: ((r / "link").unlink(), (r / "link").write_text("src/pkg/mod.py")),
            id="symlink-to-file-same-bytes",
        ),
    ],
)
def test_names_modes_and_contents_change_the_digest(
    store: LocalStore, sample: Path, change: object
) -> None:
    before = ingest_directory(store, sample).digest
    assert digest_after(store, sample, change) != before


def test_permission_bits_other_than_exec_do_not_matter(store: LocalStore, sample: Path) -> None:
    before = ingest_directory(store, sample).digest
    os.chmod(sample / "README", 0o600)
    os.chmod(sample / "bin" / "run", 0o700)
    assert ingest_directory(store, sample).digest == before


def test_manifest_entry_fields_change_the_digest() -> None:
    base = Tree({"a": TreeEntry("file", D1, 1)})
    variants = [
        Tree({"b": TreeEntry("file", D1, 1)}),
        Tree({"a": TreeEntry("executable", D1, 1)}),
        Tree({"a": TreeEntry("symlink", D1, 1)}),
        Tree({"a": TreeEntry("file", D2, 1)}),
        Tree({"a": TreeEntry("file", D1, 2)}),
        Tree({"a": TreeEntry("file", D1, 1), "d": TreeEntry("directory")}),
    ]
    digests = {base.digest, *(v.digest for v in variants)}
    assert len(digests) == len(variants) + 1


def test_manifest_bytes_are_the_canonical_json_of_the_manifest() -> None:
    tree = Tree(
        {
            "plain": TreeEntry("file", D1, 0),
            'quote"and\\backslash': TreeEntry("executable", D2, 12),
            "tab\tnewline\ncontrol\x01": TreeEntry("symlink", D1, 3),
            "unicode/é/日本/\u2028": TreeEntry("file", D2, 2**40),
            "empty dir": TreeEntry("directory"),
            "Zsorted/before/a": TreeEntry("file", D1, 1),
        }
    )
    assert tree.manifest_bytes() == canonical_json(tree.manifest())
    assert tree.digest == sha256_hex(canonical_json(tree.manifest()))
    assert Tree.from_bytes(tree.manifest_bytes()) == tree


# -- unsafe manifests ---------------------------------------------------------------------------

UNSAFE_PATHS = [
    "/etc/passwd",
    "../x",
    "a/../../x",
    "a/..",
    "./a",
    "a/./b",
    "a//b",
    "a/",
    "",
    ".",
    "a\0b",
]


@pytest.mark.parametrize("path", UNSAFE_PATHS)
def test_unsafe_paths_are_refused(path: str) -> None:
    with pytest.raises(InvalidTreeError):
        Tree({path: TreeEntry("file", D1, 1)})
    with pytest.raises(InvalidTreeError):
        Tree({path: TreeEntry("directory")})


def manifest_bytes(entries: dict[str, dict[str, object]], version: object = 1) -> bytes:
    return json.dumps({"version": version, "entries": entries}).encode()


@pytest.mark.parametrize("path", UNSAFE_PATHS)
def test_unsafe_manifests_from_the_wire_are_refused(store: LocalStore, path: str) -> None:
    data = manifest_bytes({path: {"kind": "file", "mode": 420, "size": 1, "digest": D1}})
    with pytest.raises(InvalidTreeError):
        Tree.from_bytes(data)
    with pytest.raises(InvalidTreeError):
        load_tree(store, store.put_bytes(data))


@pytest.mark.parametrize("kind", ["file", "executable", "symlink"])
def test_paths_under_a_non_directory_are_refused(kind: str) -> None:
    with pytest.raises(InvalidTreeError, match="not a directory"):
        Tree({"x": TreeEntry(kind, D1, 1), "x/evil": TreeEntry("file", D2, 1)})  # type: ignore[arg-type]
    with pytest.raises(InvalidTreeError, match="not a directory"):
        Tree({"a/x": TreeEntry(kind, D1, 1), "a/x/b/c": TreeEntry("directory")})  # type: ignore[arg-type]
    with pytest.raises(InvalidTreeError, match="'a/x/b/c' lies under 'a'"):
        Tree({"a/x/b/c": TreeEntry("directory"), "a": TreeEntry(kind, D1, 1)})  # type: ignore[arg-type]
    with pytest.raises(InvalidTreeError):
        Tree.from_bytes(
            manifest_bytes(
                {
                    "x": {"kind": kind, "mode": 0, "size": 1, "digest": D1},
                    "x/evil": {"kind": "file", "mode": 420, "size": 1, "digest": D2},
                }
            )
        )


def test_a_path_under_an_empty_directory_entry_is_allowed() -> None:
    tree = Tree({"d": TreeEntry("directory"), "d/f": TreeEntry("file", D1, 1)})
    assert set(tree.entries) == {"d", "d/f"}


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b"[]",
        b'{"version": 1}',
        b'{"version": 1, "entries": []}',
        b'{"version": 1, "entries": {"a": "file"}}',
        b'{"version": 1, "entries": {"a": {"mode": 420}}}',
        manifest_bytes({"a": {"kind": "file", "size": "big", "digest": D1}}),
        manifest_bytes({"a": {"kind": "fifo", "digest": D1}}),
        manifest_bytes({"a": {"kind": "file", "digest": "xyz"}}),
        manifest_bytes({"a": {"kind": "file"}}),
        manifest_bytes({"a": {"kind": "symlink", "digest": "A" * 64}}),
        manifest_bytes({}, version=2),
    ],
)
def test_malformed_manifests_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidTreeError):
        Tree.from_bytes(data)


# -- materialized trees -------------------------------------------------------------------------


def test_materialized_trees_are_read_only(store: LocalStore, sample: Path, tmp_path: Path) -> None:
    tree = ingest_directory(store, sample)
    out = tmp_path / "out"
    materialize_tree(store, tree, out)
    # we may run as root, for whom permissions are advisory: check the mode bits
    for path in [out, *out.rglob("*")]:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            continue
        assert st.st_mode & 0o222 == 0, f"{path} is writable: {oct(st.st_mode)}"
    assert stat.S_IMODE((out / "README").stat().st_mode) == 0o444
    assert stat.S_IMODE((out / "bin" / "run").stat().st_mode) == 0o555
    make_writable(out)
    for path in [out, *out.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            assert path.stat().st_mode & 0o200
    shutil.rmtree(out)


def test_materialize_writable_on_request(store: LocalStore, sample: Path, tmp_path: Path) -> None:
    tree = ingest_directory(store, sample)
    out = tmp_path / "out"
    materialize_tree(store, tree, out, readonly=False)
    assert stat.S_IMODE((out / "README").stat().st_mode) == 0o644
    assert stat.S_IMODE((out / "bin" / "run").stat().st_mode) == 0o755
    assert (out / "deep" / "er").stat().st_mode & 0o200


def test_materialize_verifies_every_blob(store: LocalStore, sample: Path, tmp_path: Path) -> None:
    tree = ingest_directory(store, sample)
    blob = store.path(tree.entries["README"].digest or "")
    os.chmod(blob, 0o644)
    blob.write_bytes(b"tampered\n")
    with pytest.raises(CorruptObjectError):
        materialize_tree(store, tree, tmp_path / "out", readonly=False)
    assert not (tmp_path / "out" / "README").exists()


def test_symlinks_are_materialized_verbatim(
    store: LocalStore, sample: Path, tmp_path: Path
) -> None:
    tree = ingest_directory(store, sample)
    out = tmp_path / "out"
    materialize_tree(store, tree, out)
    assert os.readlink(out / "dangling") == "/nonexistent/target"
    assert (out / "link").read_text() == "print('hi')\n"
    make_writable(out)
