"""The lazy stage DSL and the client-side instantiate pass."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from diracx.api import Stage, TreeRef, command, host_dir, host_file, instantiate, stage
from diracx.api.instantiate import PipelineInBuilderError
from diracx.api.stages import HostTree
from diracx.core.derivation import Derivation, PipelineSubmission, plan_order
from diracx.core.exceptions import InvalidPipelineError
from diracx.core.store import LocalStore
from diracx.core.tree import Tree, TreeEntry, ingest_directory

HERE = Path(__file__).parent


def load_module(path: Path, name: str | None = None) -> ModuleType:
    """Import a file as a fresh module (as the worker does), whatever its name."""
    name = name or f"{path.stem}_{time.perf_counter_ns()}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def defs() -> ModuleType:
    return load_module(HERE / "pipeline_defs.py")


def server_check(submission: PipelineSubmission) -> list[str]:
    """What the server does: parse the JSON it receives, re-derive and order every DRef."""
    received = PipelineSubmission.model_validate_json(submission.model_dump_json())
    return [dref for dref, _ in plan_order(received)]


# --------------------------------------------------------------------------- stages are lazy data


def test_stage_is_lazy_immutable_data() -> None:
    a = command("a", ["true"], env={"X": "1"}, timeout=5, config={"k": [1, 2]})
    assert a.name == "a"
    assert dict(a.builder) == {
        "executor": "process",
        "argv": ["true"],
        "env": {"X": "1"},
        "timeout": 5,
    }
    assert dict(a.config) == {"k": [1, 2]}
    with pytest.raises(TypeError):
        a.config["k"] = 3  # type: ignore[index]
    assert len(a.dref) == 64
    assert a.dref == a.dref
    # hashable by identity
    assert len({a, a, command("a", ["true"])}) == 2


def test_config_is_copied_when_the_stage_is_made() -> None:
    values = [1, 2]
    a = command("a", ["true"], config={"v": values})
    before = a.dref
    values.append(3)
    assert a.config["v"] == [1, 2]
    assert command("a", ["true"], config={"v": [1, 2]}).dref == before


def test_dref_is_the_derivation_identity() -> None:
    a = command("a", ["echo", "hi"], config={"n": 1})
    b = command("b", ["cat"], inputs={"src": a})
    expected_a = Derivation(
        name="a", builder={"executor": "process", "argv": ["echo", "hi"]}, config={"n": 1}
    )
    assert a.dref == expected_a.dref
    expected_b = Derivation.model_validate(
        {
            "name": "b",
            "builder": {"executor": "process", "argv": ["cat"]},
            "inputs": {"src": {"drv": a.dref}},
        }
    )
    assert b.dref == expected_b.dref


# --------------------------------------------------------------------------- stability


def test_drefs_stable_across_instantiations(defs: ModuleType) -> None:
    first = defs.drefs()
    second = defs.drefs()
    assert first == second
    stages = defs.build()
    one, two = instantiate(stages), instantiate(stages)
    assert one.targets == two.targets
    assert one.submission.model_dump() == two.submission.model_dump()
    assert one.targets == [first[k] for k in stages]


def test_drefs_stable_across_processes(defs: ModuleType) -> None:
    here = defs.drefs()
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    env.pop("DIRACX_IN_BUILDER", None)
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, pipeline_defs; print(json.dumps(pipeline_defs.drefs()))",
        ],
        cwd=HERE,
        env={**env, "PYTHONPATH": str(HERE)},
        capture_output=True,
        text=True,
        check=True,
    )
    # as a script: the module is __main__, but the python stages get the same DRefs
    as_script = subprocess.run(
        [sys.executable, str(HERE / "pipeline_defs.py")],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(imported.stdout) == here
    assert json.loads(as_script.stdout) == here


# --------------------------------------------------------------------------- Merkle propagation


def test_config_change_changes_stage_and_downstream_only() -> None:
    def pipeline(b_level: int) -> dict[str, Stage]:
        a = command("a", ["true"])
        b = command("b", ["true"], inputs={"a": a}, config={"level": b_level})
        c = command("c", ["true"], inputs={"b": b})
        d = command("d", ["true"], inputs={"c": c})
        sibling = command("sibling", ["true"], inputs={"a": a})
        return {"a": a, "b": b, "c": c, "d": d, "sibling": sibling}

    def drefs(level: int) -> dict[str, str]:
        inst = instantiate(pipeline(level))
        assert inst.keys is not None
        return dict(zip(inst.keys, inst.targets, strict=True))

    old, new = drefs(1), drefs(2)
    assert old["a"] == new["a"]
    assert old["sibling"] == new["sibling"]
    for name in ("b", "c", "d"):
        assert old[name] != new[name], name


def test_python_config_override_changes_downstream(defs: ModuleType) -> None:
    base, changed = defs.drefs("report"), defs.drefs("other title")
    assert base["fetch"] == changed["fetch"] and base["other"] == changed["other"]
    assert base["report"] != changed["report"] and base["merged"] != changed["merged"]
    # the default value given explicitly is the same config
    fetch = defs.build()["fetch"]
    assert defs.summarize(data=fetch).dref == defs.summarize(data=fetch, title="report").dref
    assert defs.summarize(fetch, limit=3).dref == defs.summarize(data=fetch).dref


MODULE_V1 = """
from diracx.api import stage

@stage
def double(data, out, factor=2):
    return factor
"""


def test_python_stage_dref_follows_module_source(tmp_path: Path) -> None:
    path = tmp_path / "mystages.py"
    path.write_text(MODULE_V1)
    tree_ref = TreeRef("ab" * 32)
    v1 = load_module(path).double(data=tree_ref)
    assert v1.builder["function"] == "mystages:double"
    again = load_module(path).double(data=tree_ref)
    assert again.dref == v1.dref

    path.write_text(MODULE_V1 + "# a comment is a change of the source\n")
    v2 = load_module(path).double(data=tree_ref)
    assert v2.dref != v1.dref
    assert v2.builder["source"] != v1.builder["source"]

    # the same source elsewhere, even executable: same DRef (only its name and bytes count)
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "mystages.py").write_text(MODULE_V1)
    (other / "mystages.py").chmod(0o755)
    assert load_module(other / "mystages.py").double(data=tree_ref).dref == v1.dref


def test_python_stage_ships_its_module_source(tmp_path: Path) -> None:
    path = tmp_path / "shipped.py"
    path.write_text(MODULE_V1)
    module = load_module(path)
    s = module.double(data=TreeRef("cd" * 32), factor=3)
    inst = instantiate(s)
    source = s.builder["source"]
    data = path.read_bytes()
    file_digest = hashlib.sha256(data).hexdigest()
    tree = Tree({"shipped.py": TreeEntry("file", file_digest, len(data))})
    assert source == tree.digest
    assert inst.uploads == {source: tree.manifest_bytes(), file_digest: data}
    assert inst.trees[source] == tree
    assert inst.external == {"cd" * 32}
    # the worker's runner unwraps the decorated object
    assert module.double.__wrapped__(Path("x"), Path("y"), factor=5) == 5
    assert module.double.__name__ == "double"


# --------------------------------------------------------------------------- host trees


def make_project(root: Path) -> None:
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "__init__.py").write_text("x = 1\n")
    (root / "src" / "pkg" / "__pycache__").mkdir()
    (root / "src" / "pkg" / "__pycache__" / "__init__.cpython-311.pyc").write_bytes(b"\0junk")
    (root / "src" / "stray.pyc").write_bytes(b"\0junk")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (root / "run.sh").write_text("#!/bin/sh\necho run\n")
    (root / "run.sh").chmod(0o755)
    (root / "empty").mkdir()
    (root / "link").symlink_to("src/pkg/__init__.py")
    (root / "docs" / "build").mkdir(parents=True)
    (root / "docs" / "build" / "index.html").write_text("<html/>")
    (root / "docs" / "index.md").write_text("# docs\n")


EXCLUDE = ["__pycache__", "*.pyc", ".git", "docs/build"]


def host_tree(h: HostTree) -> tuple[Tree, dict[str, Path | bytes]]:
    uploads: dict[str, Path | bytes] = {}
    return h.scan(uploads), uploads


def test_host_dir_exclude_and_entries(tmp_path: Path) -> None:
    make_project(tmp_path)
    tree, uploads = host_tree(host_dir(tmp_path, exclude=EXCLUDE))
    kinds = {path: e.kind for path, e in tree.entries.items()}
    assert kinds == {
        "src/pkg/__init__.py": "file",
        "run.sh": "executable",
        "empty": "directory",
        "link": "symlink",
        "docs/index.md": "file",
    }
    link = tree.entries["link"]
    assert uploads[link.digest or ""] == b"src/pkg/__init__.py"
    init = tree.entries["src/pkg/__init__.py"]
    assert uploads[init.digest or ""] == tmp_path / "src/pkg/__init__.py"
    # exactly the blobs of the tree plus its manifest
    assert set(uploads) == tree.blob_digests() | {tree.digest}
    assert uploads[tree.digest] == tree.manifest_bytes()


def test_host_dir_hashes_like_the_store_ingests(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    make_project(project)
    tree, uploads = host_tree(host_dir(project))
    store = LocalStore(tmp_path / "store")
    ingested = ingest_directory(store, project)
    assert ingested == tree
    assert tree.digest == ingested.digest
    # what the client would upload is exactly what the store holds
    held = {p.parent.name + p.name for p in (tmp_path / "store" / "blobs").glob("*/*")}
    assert held == set(uploads)


def test_exclude_patterns(tmp_path: Path) -> None:
    make_project(tmp_path)
    only_dirs, _ = host_tree(host_dir(tmp_path, exclude=["src/"]))
    assert not any(p.startswith("src") for p in only_dirs.entries)
    # a pattern without '/' applies at any depth, one with '/' to the relative path
    deep, _ = host_tree(host_dir(tmp_path, exclude=["__init__.py"]))
    assert "src/pkg/__init__.py" not in deep.entries
    anchored, _ = host_tree(host_dir(tmp_path, exclude=["pkg/__init__.py"]))
    assert "src/pkg/__init__.py" in anchored.entries
    # a directory whose every child is excluded stays, as an empty directory
    emptied, _ = host_tree(host_dir(tmp_path, exclude=["*.md", "build"]))
    assert emptied.entries["docs"].kind == "directory"
    # a single string is one pattern
    single, _ = host_tree(host_dir(tmp_path, exclude=".git"))
    assert not any(p.startswith(".git") for p in single.entries)
    assert any(p.startswith("docs/build") for p in single.entries)


def test_names_modes_and_contents_change_the_digest(tmp_path: Path) -> None:
    make_project(tmp_path)
    h = host_dir(tmp_path, exclude=EXCLUDE)

    def digest() -> str:
        return host_tree(h)[0].digest

    base = digest()
    (tmp_path / "src" / "pkg" / "__pycache__" / "other.pyc").write_bytes(b"excluded")
    (tmp_path / ".git" / "index").write_bytes(b"excluded")
    assert digest() == base
    (tmp_path / "run.sh").chmod(0o644)
    assert digest() != base
    (tmp_path / "run.sh").chmod(0o755)
    assert digest() == base
    (tmp_path / "run.sh").rename(tmp_path / "run2.sh")
    assert digest() != base
    (tmp_path / "run2.sh").rename(tmp_path / "run.sh")
    assert digest() == base
    (tmp_path / "docs" / "index.md").write_text("# changed\n")
    assert digest() != base
    (tmp_path / "docs" / "index.md").write_text("# docs\n")
    assert digest() == base
    (tmp_path / "empty").rmdir()
    assert digest() != base
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").unlink()
    (tmp_path / "link").symlink_to("run.sh")
    assert digest() != base


def test_host_file_is_a_tree_of_one_file(tmp_path: Path) -> None:
    script = tmp_path / "build.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    tree, uploads = host_tree(host_file(script))
    data = script.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert tree.entries == {"build.sh": TreeEntry("executable", digest, len(data))}
    assert uploads == {digest: script, tree.digest: tree.manifest_bytes()}
    # a Path given directly as an input is a file or a directory, found at instantiate time
    s = command("use", ["true"], inputs={"script": script, "dir": tmp_path})
    inst = instantiate(s)
    drv = inst.submission.derivations[inst.targets[0]]
    assert drv.inputs["script"].model_dump() == {"tree": tree.digest}
    assert drv.inputs["dir"].model_dump() == {"tree": host_tree(host_dir(tmp_path))[0].digest}


def test_host_paths_are_lazy(tmp_path: Path) -> None:
    missing = tmp_path / "not-yet"
    s = command("later", ["true"], inputs={"src": host_dir(missing), "f": host_file(missing / "f")})
    with pytest.raises(FileNotFoundError, match="no such directory"):
        instantiate(s)
    missing.mkdir()
    (missing / "f").write_text("now\n")
    inst = instantiate(s)
    assert len(inst.trees) == 1  # the directory holds only f: the same tree as host_file(f)
    (missing / "g").write_text("later\n")
    assert len(instantiate(s).trees) == 2
    # relative paths are made absolute when the input is created
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        rel = host_dir("not-yet")
    finally:
        os.chdir(cwd)
    assert rel.path == missing


def test_host_changes_are_seen_by_the_next_instantiate(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("1")
    a = command("a", ["true"], inputs={"src": host_dir(tmp_path)})
    b = command("b", ["true"], inputs={"a": a})
    other = command("other", ["true"])
    first = instantiate([a, b, other])
    (tmp_path / "a.txt").write_text("2")
    second = instantiate([a, b, other])
    assert first.targets[0] != second.targets[0] and first.targets[1] != second.targets[1]
    assert first.targets[2] == second.targets[2]
    assert b.dref == second.targets[1]
    (tmp_path / "a.txt").write_text("1")
    assert instantiate([a, b, other]).targets == first.targets


def test_file_digest_cache_sees_rewrites(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"A" * 100)
    old = time.time() - 3600
    os.utime(path, (old, old))  # an old file: its digest is kept by this process
    first = host_tree(host_file(path))[0]
    path.write_bytes(b"B" * 100)  # same size...
    os.utime(path, (old, old))  # ...and same mtime: the change time still differs
    second = host_tree(host_file(path))[0]
    assert first.digest != second.digest
    assert second.entries["data.bin"].digest == hashlib.sha256(b"B" * 100).hexdigest()


def test_unchanged_settled_files_are_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diracx.api import stages as stages_module

    path = tmp_path / "big.bin"
    path.write_bytes(b"C" * 1000)
    monkeypatch.setattr(stages_module, "_SETTLED_NS", -1)  # pretend the file is old
    first = host_tree(host_file(path))[0]

    def no_reading(p: Path) -> tuple[str, int]:
        raise AssertionError(f"{p} was read again")

    monkeypatch.setattr(stages_module, "hash_file", no_reading)
    assert host_tree(host_file(path))[0] == first


def test_host_dir_scanned_once_per_instantiate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(tmp_path)
    calls = []
    real_scan = HostTree.scan

    def counting_scan(self: HostTree, uploads: dict[str, Path | bytes]) -> Tree:
        calls.append(self.path)
        return real_scan(self, uploads)

    monkeypatch.setattr(HostTree, "scan", counting_scan)
    stages = [
        command(f"s{i}", ["true", str(i)], inputs={"src": host_dir(tmp_path, exclude=EXCLUDE)})
        for i in range(50)
    ]
    inst = instantiate(stages)
    assert len(calls) == 1
    assert len(inst.submission.derivations) == 50
    instantiate(stages)
    assert len(calls) == 2  # host files are hashed again by each instantiate: they may have changed


def test_uploads_are_exactly_the_referenced_blobs(tmp_path: Path, defs: ModuleType) -> None:
    make_project(tmp_path)
    src = host_dir(tmp_path, exclude=EXCLUDE)
    notes = tmp_path / "docs" / "index.md"
    fetch = defs.build()["fetch"]
    earlier = TreeRef("ef" * 32)
    report = defs.summarize(data=src)
    final = command(
        "final",
        ["true"],
        inputs={"report": report, "notes": host_file(notes), "old": earlier, "f": fetch},
    )
    inst = instantiate([final, report])
    src_tree, src_blobs = host_tree(src)
    notes_tree, notes_blobs = host_tree(host_file(notes))
    source = report.builder["source"]
    module_bytes = (HERE / "pipeline_defs.py").read_bytes()
    expected = {
        **src_blobs,
        **notes_blobs,
        source: Tree(
            {
                "pipeline_defs.py": TreeEntry(
                    "file", hashlib.sha256(module_bytes).hexdigest(), len(module_bytes)
                )
            }
        ).manifest_bytes(),
        hashlib.sha256(module_bytes).hexdigest(): module_bytes,
    }
    assert inst.uploads == expected
    assert earlier.digest not in inst.uploads
    assert inst.external == {earlier.digest}
    assert set(inst.trees) == {src_tree.digest, notes_tree.digest, source}
    # every tree a derivation needs is uploaded or external
    needed = set().union(*(d.tree_digests() for d in inst.submission.derivations.values()))
    assert needed == {src_tree.digest, notes_tree.digest, source, earlier.digest}
    for digest, blob in inst.uploads.items():
        data = blob if isinstance(blob, bytes) else blob.read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest
        assert inst.upload_size(digest) == len(data)


def test_files_are_streamed_not_copied(tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(8):
            f.write(os.urandom(1 << 20))
    inst = instantiate(command("use-big", ["true"], inputs={"big": host_file(big)}))
    file_blobs = [v for v in inst.uploads.values() if isinstance(v, Path)]
    assert file_blobs == [big]
    assert sum(len(v) for v in inst.uploads.values() if isinstance(v, bytes)) < 1000


# --------------------------------------------------------------------------- instantiate


def test_instantiate_shapes_dedup_and_order() -> None:
    a1 = command("a", ["true"])
    a2 = command("a", ["true"])  # another object, same derivation
    b = command("b", ["true"], inputs={"x": a1, "y": a2})
    single = instantiate(b)
    assert single.single and single.targets == [b.dref]
    assert len(single.submission.derivations) == 2
    assert single.order == [a1.dref, b.dref]
    assert single.stages[a1.dref] is a1
    assert single.arrange({a1.dref: "A", b.dref: "B"}) == "B"

    many = instantiate([b, a2, b])
    assert many.targets == [b.dref, a1.dref, b.dref]
    assert many.submission.targets == [b.dref, a1.dref]
    assert many.arrange({a1.dref: 1, b.dref: 2}) == [2, 1, 2]

    named = instantiate({"first": a2, "second": b})
    assert named.keys == ["first", "second"]
    assert named.arrange({a1.dref: 1, b.dref: 2}) == {"first": 1, "second": 2}
    assert server_check(named.submission) == named.order


def test_submission_is_accepted_by_the_server_check(defs: ModuleType, tmp_path: Path) -> None:
    make_project(tmp_path)
    stages = defs.build()
    final = command("final", ["true"], inputs={"m": stages["merged"], "src": host_dir(tmp_path)})
    inst = instantiate(final)
    assert server_check(inst.submission) == inst.order
    assert set(inst.order) == set(inst.submission.derivations) == set(inst.stages)
    for dref, drv in inst.submission.derivations.items():
        assert Derivation.model_validate_json(drv.model_dump_json()).dref == dref


class FakeRealization:
    """What the session's Realization offers to be used as an input."""

    def __init__(self, output: str) -> None:
        self.output = output

    def as_input(self) -> TreeRef:
        return TreeRef(self.output)


def test_realization_like_objects_are_inputs(defs: ModuleType) -> None:
    done = FakeRealization("12" * 32)
    s = command("next", ["true"], inputs={"prev": done})
    assert s.inputs["prev"] == TreeRef("12" * 32)
    p = defs.summarize(data=done)
    inst = instantiate([s, p])
    assert inst.submission.derivations[s.dref].inputs["prev"].model_dump() == {"tree": "12" * 32}
    assert inst.external == {"12" * 32}


def test_deep_chain() -> None:
    prev = command("c0", ["true"])
    for i in range(1, 3000):
        prev = command(f"c{i}", ["true"], inputs={"prev": prev})
    inst = instantiate(prev)
    assert len(inst.order) == 3000 and inst.order[-1] == prev.dref


# --------------------------------------------------------------------------- errors


def test_unknown_keyword_names_stage_config_and_inputs(defs: ModuleType) -> None:
    fetch = defs.build()["fetch"]
    with pytest.raises(TypeError) as err:
        defs.summarize(data=fetch, titel="x")
    message = str(err.value)
    assert "'summarize'" in message and "'titel'" in message
    assert "title='report'" in message and "limit=3" in message and "inputs: data" in message


def test_missing_input(defs: ModuleType) -> None:
    with pytest.raises(TypeError, match=r"stage 'summarize' is missing input\(s\) 'data'"):
        defs.summarize(title="x")
    with pytest.raises(TypeError, match=r"'merge-all' is missing input.*'right'"):
        defs.merge(left=defs.build()["fetch"])


def test_bad_inputs(defs: ModuleType) -> None:
    with pytest.raises(TypeError, match="call it to make a stage"):
        defs.summarize(data=defs.summarize)
    with pytest.raises(TypeError, match="host_file"):
        defs.summarize(data="data.txt")
    with pytest.raises(TypeError, match="must be a Stage"):
        command("x", ["true"], inputs={"n": 3})
    with pytest.raises(TypeError, match="output directory"):
        defs.summarize(data=TreeRef("aa" * 32), out="/tmp")
    with pytest.raises(ValueError, match="would both be"):
        command("x", ["true"], inputs={"src": TreeRef("aa" * 32), "SRC": TreeRef("aa" * 32)})
    with pytest.raises(ValueError, match="Python-style identifier"):
        command("x", ["true"], inputs={"my-src": TreeRef("aa" * 32)})
    with pytest.raises(ValueError, match="SHA-256"):
        TreeRef("nope")
    with pytest.raises(TypeError, match="not a TreeRef"):

        class Bad:
            def as_input(self) -> str:
                return "x"

        command("x", ["true"], inputs={"b": Bad()})


def test_non_json_config(defs: ModuleType) -> None:
    fetch = defs.build()["fetch"]
    with pytest.raises(
        TypeError, match="config parameter 'limit' of stage 'summarize' must be JSON"
    ):
        defs.summarize(data=fetch, limit={1, 2})
    with pytest.raises(TypeError, match="no JSON form"):
        defs.summarize(data=fetch, limit=float("nan"))
    with pytest.raises(TypeError, match="keys must be strings"):
        command("x", ["true"], config={"m": {1: "a"}})
    with pytest.raises(TypeError, match="host_file"):
        command("x", ["true"], config={"p": Path("/etc/hosts")})
    with pytest.raises(TypeError, match="give that parameter no default"):
        defs.summarize(data=fetch, title=fetch)
    with pytest.raises(TypeError, match="default of config parameter 'when'"):
        stage(_bad_default)


def _bad_default(out: Path, when: object = object()) -> None: ...


def test_json_subclasses_are_plain_json() -> None:
    from collections import OrderedDict
    from enum import IntEnum, StrEnum

    class Color(StrEnum):
        RED = "red"

    class Level(IntEnum):
        HIGH = 3

    s = command(
        "x", ["true"], config={"c": Color.RED, "l": Level.HIGH, "o": OrderedDict(a=(1, 2.5))}
    )
    assert dict(s.config) == {"c": "red", "l": 3, "o": {"a": [1, 2.5]}}
    assert type(s.config["c"]) is str and type(s.config["l"]) is int


def test_nested_functions_and_lambdas_are_refused() -> None:
    with pytest.raises(TypeError, match="must be defined at module level, not inside 'test_nested"):

        @stage
        def inner(out: Path) -> None: ...

    with pytest.raises(TypeError, match="lambda"):
        stage(lambda out: None)
    with pytest.raises(TypeError, match=r"\*args"):
        stage(_varargs)


def _varargs(*paths: Path, out: Path) -> None: ...


def _private(out: Path) -> None: ...


def test_stage_names_and_builders_are_checked() -> None:
    assert stage(_private)().name == "private"  # leading underscores are dropped
    assert stage(name="private-ok")(_private)().name == "private-ok"
    with pytest.raises(ValueError, match="stage name"):
        stage(name="-x")(_private)
    with pytest.raises(ValueError, match="stage name"):
        command("has space", ["true"])
    with pytest.raises(TypeError, match="list of strings"):
        command("x", "echo hi")
    with pytest.raises(TypeError, match=r"argv\[1\]"):
        command("x", ["cat", Path("/etc/hosts")])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="set by DiracX"):
        command("x", ["true"], env={"OUT": "/tmp"})
    with pytest.raises(ValueError, match="argv"):
        command("x", [])
    with pytest.raises(ValueError, match="workdir"):
        command("x", ["true"], workdir="../escape")
    with pytest.raises(ValueError, match="unknown executor"):
        Stage("x", {"executor": "teleport"})
    with pytest.raises(ValueError, match="timeout"):
        stage(timeout=-1)(_private)


def test_python_stage_needs_a_source_file() -> None:
    namespace: dict[str, Any] = {"__name__": "notebook"}
    exec("def cell(out):\n    return 1\n", namespace)  # a function without a file
    decorated = stage(namespace["cell"])  # decorating works (the worker would never see it)...
    with pytest.raises(TypeError, match=r"defined in a \.py file"):
        decorated()  # ...making a stage of it does not


def test_module_file_name_must_be_importable(tmp_path: Path) -> None:
    path = tmp_path / "my-pipeline.py"
    path.write_text(MODULE_V1)
    module = load_module(path)
    with pytest.raises(TypeError, match="rename it"):
        module.double(data=TreeRef("aa" * 32))


def test_builder_guard(monkeypatch: pytest.MonkeyPatch, defs: ModuleType) -> None:
    stages = defs.build()  # making stages inside a build is fine (the worker imports the module)
    monkeypatch.setenv("DIRACX_IN_BUILDER", "1")
    with pytest.raises(PipelineInBuilderError, match="if __name__ == '__main__':"):
        instantiate(stages)


def test_instantiate_argument_errors(defs: ModuleType) -> None:
    with pytest.raises(ValueError, match="nothing to instantiate"):
        instantiate([])
    with pytest.raises(TypeError, match="call it"):
        instantiate(defs.summarize)
    with pytest.raises(TypeError, match="must be a Stage"):
        instantiate(["x"])  # type: ignore[list-item]


def test_plan_order_errors_surface(monkeypatch: pytest.MonkeyPatch) -> None:
    # The graph is checked on the client with the server's rules.
    a = command("a", ["true"])
    inst = instantiate(a)
    bad = PipelineSubmission.model_construct(
        derivations={"0" * 64: inst.submission.derivations[a.dref]}, targets=["0" * 64]
    )
    with pytest.raises(InvalidPipelineError, match="hash mismatch"):
        plan_order(bad)


# --------------------------------------------------------------------------- speed


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return (time.perf_counter() - t0) * 1e3, result


def test_instantiate_speed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = []
    t_make, wide = _timed(lambda: [command(f"s{i}", ["true", str(i)]) for i in range(1000)])
    t_first, inst = _timed(lambda: instantiate(wide))
    t_again, _ = _timed(lambda: instantiate(wide))
    assert len(inst.submission.derivations) == 1000
    lines.append(
        f"1000 wide command stages: make {t_make:.1f} ms, instantiate {t_first:.1f} ms, "
        f"again {t_again:.1f} ms"
    )

    def chain() -> Stage:
        prev = command("c0", ["true"])
        for i in range(1, 200):
            prev = command(f"c{i}", ["true"], inputs={"prev": prev})
        return prev

    t_make, last = _timed(chain)
    t_first, inst = _timed(lambda: instantiate(last))
    t_again, _ = _timed(lambda: instantiate(last))
    assert len(inst.order) == 200
    lines.append(
        f"200-chain command stages: make {t_make:.1f} ms, instantiate {t_first:.1f} ms, "
        f"again {t_again:.1f} ms"
    )

    defs = load_module(HERE / "pipeline_defs.py")
    t_make, py = _timed(
        lambda: [defs.summarize(data=TreeRef("aa" * 32), limit=i) for i in range(1000)]
    )
    t_first, inst = _timed(lambda: instantiate(py))
    t_again, _ = _timed(lambda: instantiate(py))
    lines.append(
        f"1000 wide python stages:  make {t_make:.1f} ms, instantiate {t_first:.1f} ms, "
        f"again {t_again:.1f} ms"
    )

    make_project(tmp_path)
    for i in range(200):
        (tmp_path / "src" / f"mod{i}.py").write_text(f"x = {i}\n")
    src = host_dir(tmp_path, exclude=EXCLUDE)
    t_make, hosted = _timed(
        lambda: [command(f"h{i}", ["true", str(i)], inputs={"src": src}) for i in range(1000)]
    )
    t_first, inst = _timed(lambda: instantiate(hosted))
    t_again, _ = _timed(lambda: instantiate(hosted))
    lines.append(
        f"1000 stages sharing a 205-file host_dir: make {t_make:.1f} ms, "
        f"instantiate {t_first:.1f} ms, again {t_again:.1f} ms"
    )
    with capsys.disabled():
        print("\n" + "\n".join(lines))
