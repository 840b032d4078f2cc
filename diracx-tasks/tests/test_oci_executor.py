"""The ``oci`` executor on real namespaces and overlayfs (as root), with Debian's static busybox.

The builds are run by the executor directly, with a real store: each test makes
derivations whose layers are inputs (trees holding ``layer.tar``), as the
container API does.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from diracx.core.derivation import Derivation
from diracx.core.oci import read_oci_layout
from diracx.core.store import LocalStore
from diracx.core.tree import Tree, TreeEntry, ingest_directory
from diracx.tasks.executors.base import BuildRequest, BuildResult, get_executor, prepare_scratch
from diracx.tasks.executors.oci import OciExecutor, isolation_problem, layer_cache_dir

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="the oci executor needs root"),
    pytest.mark.timeout(120),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, busybox_layout: Path) -> dict[str, Any]:
    """A store holding busybox's layers, and a data directory for the layer cache."""
    base = tmp_path_factory.mktemp("oci")
    store = LocalStore(base / "store")
    image, blobs = read_oci_layout(busybox_layout)
    trees = []
    for layer in image.layers:
        store.put_file(blobs[layer.digest])
        tree = Tree({"layer.tar": TreeEntry("file", layer.digest, layer.size)})
        store.put_bytes(tree.manifest_bytes())
        trees.append(tree.digest)
    return {"store": store, "data": base / "data", "base": base, "layers": trees, "n": [0]}


class Built:
    def __init__(self, result: BuildResult, scratch: Path) -> None:
        self.result = result
        self.scratch = scratch
        self.out = scratch / "out"
        self.log = (scratch / "log").read_bytes() if (scratch / "log").exists() else b""

    def read(self, name: str) -> bytes:
        return (self.out / name).read_bytes()

    def layer_names(self) -> list[str]:
        with tarfile.open(fileobj=io.BytesIO(self.read("layer.tar"))) as tar:
            return tar.getnames()

    def layer_tree(self, store: LocalStore) -> str:
        """The output stored as a tree (as the worker does): the next step's layer input."""
        return ingest_directory(store, self.out).digest


def build(
    world: dict[str, Any],
    builder: dict[str, Any],
    *,
    extra_layers: list[str] = (),  # type: ignore[assignment]
    inputs: dict[str, str] | None = None,
    secrets: dict[str, str] | None = None,
) -> Built:
    layers = [*world["layers"], *extra_layers]
    names = {f"layer_{i}": t for i, t in enumerate(layers)}
    all_inputs = {**names, **(inputs or {})}
    drv = Derivation(
        name="step",
        builder={"executor": "oci", "layers": list(names), **builder},
        inputs={k: {"tree": v} for k, v in all_inputs.items()},
    )
    world["n"][0] += 1
    scratch = world["base"] / f"scratch-{world['n'][0]}"
    prepare_scratch(scratch, drv)
    request = BuildRequest(
        world["n"][0],
        drv.dref,
        drv,
        scratch,
        store=world["store"],
        inputs=all_inputs,
        data_dir=world["data"],
        secrets=secrets or {},
    )
    result = asyncio.run(OciExecutor().build(request))
    return Built(result, scratch)


def sh(world: dict[str, Any], script: str, **kwargs: Any) -> Built:
    builder = {"argv": ["sh", "-c", script], **kwargs.pop("builder", {})}
    return build(world, builder, **kwargs)


# -- the basics -------------------------------------------------------------------------


def test_registered_as_a_builtin_executor() -> None:
    assert isinstance(get_executor("oci"), OciExecutor)
    assert isolation_problem() is None  # root here


def test_exec_captures_stdout_stderr_exit_code_and_the_interleaved_log(world) -> None:
    b = sh(world, "echo out1; echo err1 >&2; echo out2; exit 3", builder={"expect": "any"})
    assert b.result.ok and b.result.returncode == 3
    assert b.read("stdout") == b"out1\nout2\n"
    assert b.read("stderr") == b"err1\n"
    assert b.read("exit_code") == b"3\n"
    assert sorted(b.log.splitlines()) == [b"err1", b"out1", b"out2"]


def test_expect(world) -> None:
    failed = sh(world, "echo nope >&2; exit 2")
    assert not failed.result.ok and failed.result.returncode == 2
    assert "exit code 2" in failed.result.reason
    assert failed.log.endswith(b"diracx: the command failed: exit code 2\n")
    assert sh(world, "exit 2", builder={"expect": "failure"}).result.ok
    wrong = sh(world, "true", builder={"expect": "failure"})
    assert not wrong.result.ok and "expected the command to fail" in wrong.result.reason
    missing = build(world, {"argv": ["no-such-program"]})
    assert not missing.result.ok and missing.result.returncode == 127
    assert "no-such-program: no such file or directory in the container" in missing.result.reason


def test_the_sandbox(world) -> None:
    b = sh(
        world,
        "echo pid=$$; hostname; id -u; ls /proc/1/ns >/dev/null && echo proc;"
        "cat /proc/self/status | grep CapBnd; ls /dev; pwd; echo HOME=$HOME; cat",
        builder={"workdir": "/tmp/work", "stdin": "from stdin\n", "env": {"PATH": "/bin"}},
    )
    assert b.result.ok, b.log
    out = b.read("stdout").decode()
    assert "pid=1\n" in out  # PID 1 of its own PID namespace
    assert "diracx-" in out and "proc\n" in out
    assert "\n0\n" in out  # root inside
    cap_bnd = int(out.split("CapBnd:")[1].split()[0], 16)
    assert not cap_bnd & (1 << 21), "CAP_SYS_ADMIN must not be in the bounding set"
    assert "null" in out and "urandom" in out and "/tmp/work\n" in out
    assert "HOME=/root" in out and out.endswith("from stdin\n")


def test_user_and_group_from_the_image(world) -> None:
    b = sh(
        world, "id -u; id -g; touch /tmp/mine; ls -ln /tmp/mine", builder={"user": "65534:65534"}
    )
    assert b.result.ok, b.log
    uid, gid, listing = b.read("stdout").decode().splitlines()
    assert (uid, gid) == ("65534", "65534")
    assert " 65534 " in listing
    bad = sh(world, "true", builder={"user": "nobody-here"})
    assert not bad.result.ok and "is not in the image's /etc/passwd" in bad.result.reason


def test_layers_chain_with_creations_and_deletions(world) -> None:
    store = world["store"]
    first = sh(world, "mkdir -p /a/b && echo one > /a/b/f && echo two > /a/g && rm -rf /tmp")
    assert first.result.ok, first.log
    l1 = first.layer_tree(store)
    members = first.layer_names()
    assert "a/b/f" in members and ".wh.tmp" in members
    stack = json.loads(first.read("stack.json"))  # every layer of the filesystem after it
    assert len(stack) == len(world["layers"]) + 1
    assert stack[-1] == {
        "digest": hashlib.sha256(first.read("layer.tar")).hexdigest(),
        "size": len(first.read("layer.tar")),
    }
    second = sh(world, "cat /a/b/f; rm /a/g; test -e /tmp || echo no-tmp", extra_layers=[l1])
    assert second.read("stdout") == b"one\nno-tmp\n", second.log
    l2 = second.layer_tree(store)
    third = sh(world, "ls /a; test -e /a/g || echo g-gone", extra_layers=[l1, l2])
    assert third.read("stdout") == b"b\ng-gone\n", third.log
    # an opaque directory: replaced whole in a later layer
    fourth = sh(world, "rm -rf /a && mkdir /a && echo new > /a/only", extra_layers=[l1, l2])
    l4 = fourth.layer_tree(store)
    fifth = sh(world, "ls -A /a", extra_layers=[l1, l2, l4])
    assert fifth.read("stdout") == b"only\n", fifth.log


def test_mount_points_made_for_the_exec_are_not_in_the_layer(world) -> None:
    b = sh(world, "true", builder={"caches": [{"path": "/var/cache/x/y", "name": "mp-test"}]})
    names = b.layer_names()
    assert not any(n.startswith(("var", "proc", "sys", "dev")) for n in names), names


def test_copies_and_extraction(world, tmp_path: Path) -> None:
    store = world["store"]
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f.txt").write_text("hello\n")
    (src / "run.sh").write_text("#!/bin/sh\necho ran\n")
    (src / "run.sh").chmod(0o755)
    (src / "skip.pyc").write_text("x")
    tree = ingest_directory(store, src).digest
    copy = build(
        world,
        {"copies": [{"path": "/app", "input": "src", "exclude": ["*.pyc"]}]},
        inputs={"src": tree},
    )
    assert copy.result.ok, copy.log
    layer = copy.layer_tree(store)
    run = sh(world, "/app/run.sh; cat /app/sub/f.txt; ls /app", extra_layers=[layer])
    assert run.read("stdout") == b"ran\nhello\nrun.sh\nsub\n", run.log
    out = build(world, {"extract": {"path": "/app/sub"}}, extra_layers=[layer])
    assert out.result.ok, out.log
    assert (out.out / "f.txt").read_text() == "hello\n"
    one = build(world, {"extract": {"path": "/app/run.sh", "kind": "file"}}, extra_layers=[layer])
    assert (one.out / "run.sh").read_text().endswith("echo ran\n")
    missing = build(world, {"extract": {"path": "/nowhere"}})
    assert not missing.result.ok and "'/nowhere' does not exist" in missing.result.reason


def test_a_symlink_in_the_image_never_leads_outside(world, tmp_path: Path) -> None:
    store = world["store"]
    target = tmp_path / "host-target"
    target.mkdir()
    escape = sh(world, f"ln -s {target} /escape && ln -s ../../../../{target} /escape2")
    layer = escape.layer_tree(store)
    data = tmp_path / "data"
    data.mkdir()
    (data / "planted").write_text("x")
    tree = ingest_directory(store, data).digest
    for where in ("/escape", "/escape2"):
        b = build(
            world,
            {"copies": [{"path": where, "input": "src"}]},
            extra_layers=[layer],
            inputs={"src": tree},
        )
        assert b.result.ok, b.log
    assert list(target.iterdir()) == []  # nothing reached the host's directory


def test_mounted_inputs_are_not_part_of_the_layer(world, tmp_path: Path) -> None:
    store = world["store"]
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "data.txt").write_text("mounted\n")
    tree = ingest_directory(store, tmp_path / "m").digest
    b = sh(
        world,
        "cat /mnt/in/data.txt; echo more > /mnt/in/new",
        builder={"mounts": [{"path": "/mnt/in", "input": "m"}]},
        inputs={"m": tree},
    )
    assert b.read("stdout") == b"mounted\n", b.log
    names = b.layer_names()
    assert not any(n.startswith("mnt") for n in names)


# -- limits -------------------------------------------------------------------------------


def test_timeout_kills_the_whole_sandbox(world) -> None:
    start = time.monotonic()
    b = sh(world, "sleep 173 & sleep 173 & sleep 173", builder={"timeout": 1})
    assert time.monotonic() - start < 10
    assert not b.result.ok and b.result.reason == "timed out after 1 s"
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", "^sleep 173$"], capture_output=True, text=True)
    assert left.stdout.strip() == ""


def test_memory_limit(world) -> None:
    script = "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived ${#x}"
    b = sh(world, script, builder={"memory_mb": 32})
    if "cannot enforce" in b.result.reason:  # no writable memory cgroup on this machine
        assert "memory limit of 32 MiB was asked for" in b.result.reason
        pytest.skip(b.result.reason)
    assert not b.result.ok
    assert "out of memory (limit 32 MiB)" in b.result.reason, b.log
    assert sh(world, "echo small", builder={"memory_mb": 64}).result.ok


# -- cache volumes --------------------------------------------------------------------------


def test_cache_volume_sharing_modes(world) -> None:
    cache = [{"path": "/cache", "name": "counter", "sharing": "shared"}]
    first = sh(world, "echo 1 >> /cache/n; wc -l < /cache/n", builder={"caches": cache})
    second = sh(world, "echo 1 >> /cache/n; wc -l < /cache/n", builder={"caches": cache})
    assert (first.read("stdout"), second.read("stdout")) == (b"1\n", b"2\n")
    volume = world["data"] / "oci" / "cache" / "counter"
    assert (volume / "n").read_text() == "1\n1\n"
    private = [{"path": "/cache", "name": "counter", "sharing": "private"}]
    seen = sh(world, "echo 1 >> /cache/n; wc -l < /cache/n", builder={"caches": private})
    assert seen.read("stdout") == b"3\n"  # a copy of the volume...
    assert (volume / "n").read_text() == "1\n1\n"  # ...whose changes are dropped


def test_locked_cache_volumes_run_one_at_a_time(world) -> None:
    locked = [{"path": "/cache", "name": "serial", "sharing": "locked"}]
    script = "echo start $(date +%s%N) >> /cache/log; sleep 1; echo end $(date +%s%N) >> /cache/log"

    async def both() -> list[BuildResult]:
        def one() -> BuildResult:
            return sh(
                world, script, builder={"caches": locked, "env": {"N": str(time.time())}}
            ).result

        return list(await asyncio.gather(asyncio.to_thread(one), asyncio.to_thread(one)))

    results = asyncio.run(both())
    assert all(r.ok for r in results)
    events = [
        line.split() for line in (world["data"] / "oci/cache/serial/log").read_text().splitlines()
    ]
    assert [e[0] for e in events] == ["start", "end", "start", "end"]  # never interleaved


# -- secrets and isolation ------------------------------------------------------------------


def test_secret_variables_are_masked(world) -> None:
    value = "s3cr3t-" + os.urandom(8).hex()
    b = sh(
        world,
        'echo "token=$TOKEN"; echo "$TOKEN" >&2; printf %s "$TOKEN" | sha256sum',
        builder={"secrets": [{"env": "TOKEN", "secret": "tok"}]},
        secrets={"tok": value},
    )
    assert b.result.ok, b.log
    assert value.encode() not in b.read("stdout") + b.read("stderr") + b.log
    assert b.read("stdout").startswith(b"token=***\n")
    assert hashlib.sha256(value.encode()).hexdigest().encode() in b.read("stdout")
    assert b.read("stderr") == b"***\n"
    missing = sh(world, "true", builder={"secrets": [{"env": "T", "secret": "absent"}]})
    assert not missing.result.ok and "'absent' did not reach the worker" in missing.result.reason


def test_no_network_by_default(world) -> None:
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        probe = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 {port} | head -1"
        closed = sh(world, probe)
        assert b"200" not in closed.read("stdout")
        opened = sh(world, probe + "; cat /etc/resolv.conf", builder={"network": True})
        assert opened.read("stdout").startswith(b"HTTP/1.0 200"), opened.log
        with open("/etc/resolv.conf", "rb") as f:  # the host's name resolution
            assert opened.read("stdout").endswith(f.read())
        # the mount points are not in the new layer (their parent may be, as with BuildKit)
        assert not {"etc/resolv.conf", "etc/hosts"} & set(opened.layer_names())
    finally:
        server.shutdown()


ISOLATION_PROBE = """
import asyncio, sys
from diracx.tasks.executors.oci import isolation_problem
from diracx.tasks.executors import ocisandbox
print(isolation_problem())
"""


def test_without_root_the_build_says_what_is_missing(tmp_path: Path) -> None:
    """As an unprivileged user (setpriv), the executor refuses with a clear message, and the
    sandbox itself, if started anyway, says it cannot create namespaces."""
    setpriv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run(
        [*setpriv, sys.executable, "-c", ISOLATION_PROBE], capture_output=True, text=True, cwd="/"
    )
    assert "needs root on the worker" in probe.stdout, probe.stderr
    assert "runs as uid 65534" in probe.stdout
    import marshal
    import tempfile

    from diracx.tasks.executors import oci

    readable = Path(tempfile.mkdtemp(prefix="diracx-oci-"))  # nobody can read it there
    readable.chmod(0o755)
    spec = readable / "spec"
    spec.write_bytes(marshal.dumps({"root": "/nonexistent", "lowers": 0, "argv": ["true"]}))
    spec.chmod(0o644)

    r, w = os.pipe()
    proc = subprocess.run(
        [*setpriv, sys.executable, "-I", "-S", oci.SANDBOX, str(spec), str(w)],
        pass_fds=(w,),
        capture_output=True,
    )
    os.close(w)
    with os.fdopen(r, "rb") as f:
        records = oci._records(f.read())
    spec.unlink()
    readable.rmdir()
    assert proc.returncode == 125
    assert "cannot create Linux namespaces" in records[0]["error"]
    assert "CAP_SYS_ADMIN" in records[0]["missing"]


def test_layers_are_unpacked_once(world) -> None:
    before = sorted(
        p.name for p in layer_cache_dir(world["data"]).iterdir() if not p.name.startswith(".")
    )
    sh(world, "true")
    after = sorted(
        p.name for p in layer_cache_dir(world["data"]).iterdir() if not p.name.startswith(".")
    )
    assert before == after and len(after) >= 1
