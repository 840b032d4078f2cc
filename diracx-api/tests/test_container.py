"""Container pipelines end to end: a real embedded engine, real sandboxes (as root), busybox.

One engine serves the module; every test salts its steps (an environment variable
of its own) so that what one test built is never a cache hit for another.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import sqlite3
import subprocess
import sys
import tarfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diracx.api import (
    PipelineFailedError,
    Session,
    cache_volume,
    command,
    connect,
    container,
    host,
    import_image,
    secret,
    secret_from_env,
)
from diracx.api.containers import Container
from diracx.core.builders import STACK_FILE
from diracx.testing.engine import EngineProcess

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="container steps need root"),
    pytest.mark.timeout(300),
]


@pytest.fixture(scope="module")
def session(module_engine: EngineProcess) -> Iterator[Session]:
    with connect() as s:
        yield s


@pytest.fixture
def base(session: Session, busybox_layout: Path) -> Container:
    """busybox, with an environment variable unique to the test (a salt)."""
    salt = uuid.uuid4().hex
    return import_image(busybox_layout, session=session).with_env_variable("SALT", salt)


def built_names(session: Session, target: Any) -> tuple[list[str], int]:
    """Run *target*; the names of the stages that were built, and how many were reused."""
    _, result = session.run(target)
    assert result.ok, result.failures
    return sorted(s.name for s in result.built()), len(result.cached())


# -- Must show 1: a chain of execs ----------------------------------------------------------


def test_a_chain_of_execs_sees_what_earlier_ones_made_and_removed(base: Container) -> None:
    made = base.with_exec(["sh", "-c", "mkdir -p /work && echo hello > /work/a && rm /etc/group"])
    seen = made.with_exec(["sh", "-c", "cat /work/a; test -e /etc/group || echo group-gone"])
    assert seen.stdout() == "hello\ngroup-gone\n"
    removed = seen.with_exec(["rm", "/work/a"]).with_exec(["ls", "-A", "/work"])
    assert removed.stdout() == ""
    both = base.with_exec(["sh", "-c", "echo to-out; echo to-err >&2; exit 0"])
    assert (both.stdout(), both.stderr(), both.exit_code()) == ("to-out\n", "to-err\n", 0)


def test_from_pulls_from_a_registry_and_sends_only_missing_layers(
    session: Session, oci_registry: Any, busybox_layout: Path, tmp_path: Path
) -> None:
    """Must show 1 from a registry: ``from_`` pulls the image, a chain of execs runs on it.
    A layer goes to the engine once: the next pipelines that use it send nothing."""
    from diracx.core.oci import read_oci_layout
    from diracx.testing.oci import build_image_layout, gzip_bytes, layer_bytes

    image, blobs = read_oci_layout(busybox_layout)
    marker = uuid.uuid4().hex.encode()
    unique = gzip_bytes(layer_bytes([("work", None, 0o755), ("work/marker", marker, 0o644)]))
    build_image_layout(
        tmp_path / "layout",
        [blobs[image.layers[0].digest].read_bytes(), unique],
        config=image.config,
    )
    name = f"two-layers:{uuid.uuid4().hex[:8]}"
    oci_registry.push_layout(tmp_path / "layout", name)
    ref = oci_registry.ref(name)
    sent: list[str] = []

    async def record(request: Any) -> None:
        if request.method == "PUT" and "/blobs/" in request.url.path:
            sent.append(request.url.path.rsplit("/", 1)[1])

    hooks = session.async_session.client._http.event_hooks["request"]
    hooks.append(record)
    try:
        pulled = container(session=session).from_(ref)
        chain = (
            pulled.with_exec(["sh", "-c", "echo made > /work/made && rm /etc/passwd"])
            .with_exec(
                ["sh", "-c", "cat /work/marker /work/made; test -e /etc/passwd || echo gone"]
            )
            .with_exec(["sh", "-c", "echo to-err >&2; exit 4"], expect="failure")
        )
        assert chain.exit_code() == 4 and chain.stderr() == "to-err\n"
        seen = chain.with_exec(
            ["sh", "-c", "cat /work/marker /work/made; test -e /etc/passwd || echo gone"]
        )
        assert seen.stdout() == f"{marker.decode()}made\ngone\n"
        unique_digest = hashlib.sha256(unique).hexdigest()
        assert sent.count(unique_digest) == 1  # sent with the first pipeline, once
        sent.clear()
        other = container(session=session).from_(ref).with_env_variable("X", uuid.uuid4().hex)
        assert other.with_exec(["cat", "/work/marker"]).stdout() == marker.decode()
        assert (
            unique_digest not in sent
            and hashlib.sha256(blobs[image.layers[0].digest].read_bytes()).hexdigest() not in sent
        )  # the engine has both layers: neither is sent again
    finally:
        hooks.remove(record)


def test_publish_then_from_gives_the_same_digest_and_files(
    base: Container, session: Session, oci_registry: Any
) -> None:
    built = (
        base.with_exec(["sh", "-c", "mkdir -p /pub && echo published > /pub/a && rm /etc/group"])
        .with_new_file("/pub/b", "new file\n")
        .with_entrypoint(["/bin/sh", "-c"])
        .with_default_args(["cat /pub/a"])
    )
    ref = oci_registry.ref(f"published:{uuid.uuid4().hex[:8]}")
    address = built.publish(ref)
    digest = address.rsplit("@sha256:", 1)[1]
    assert address == f"{ref}@sha256:{digest}"
    with oci_registry.client() as registry:
        assert registry.resolve(ref).digest == digest
    pulled = container(session=session).from_(ref)
    assert pulled.image().digest == digest == built.image().digest
    assert pulled.image().config.entrypoint == ["/bin/sh", "-c"]
    assert pulled.rootfs().entries() == built.rootfs().entries()
    check = pulled.with_exec(["sh", "-c", "cat /pub/a /pub/b; test -e /etc/group || echo gone"])
    assert check.stdout() == "published\nnew file\ngone\n"
    by_digest = container(session=session).from_(f"{ref.rsplit(':', 1)[0]}@sha256:{digest}")
    assert by_digest.image().digest == digest


def test_expect_and_exit_codes(base: Container) -> None:
    failing = base.with_exec(["sh", "-c", "echo broken >&2; exit 3"], expect="failure")
    assert failing.exit_code() == 3
    assert failing.stderr() == "broken\n"
    anything = base.with_exec(["sh", "-c", "exit 5"], expect="any")
    assert anything.exit_code() == 5
    with pytest.raises(PipelineFailedError) as info:
        base.with_exec(["sh", "-c", "echo it broke >&2; exit 7"]).sync()
    assert "exit code 7" in str(info.value) and "it broke" in str(info.value)
    with pytest.raises(PipelineFailedError, match="expected the command to fail"):
        base.with_exec(["true"], expect="failure").sync()


def test_settings_apply_to_later_execs(base: Container) -> None:
    ctr = (
        base.with_env_variable("GREETING", "hi")
        .with_env_variable("BOTH", "${GREETING}-there", expand=True)
        .with_workdir("/srv")
        .with_workdir("app")
        .with_user("65534")
        .with_exec(["sh", "-c", "echo $GREETING $BOTH; pwd; id -u"], stdin=None)
    )
    assert ctr.stdout() == "hi hi-there\n/srv/app\n65534\n"
    fed = base.with_exec(["cat"], stdin="piped\n")
    assert fed.stdout() == "piped\n"


# -- Must show 2: caching -------------------------------------------------------------------


def test_rerun_runs_nothing_and_a_change_reruns_it_and_later_ones(
    session: Session, busybox_layout: Path
) -> None:
    salt = uuid.uuid4().hex

    def pipeline(second: str) -> Container:
        c = import_image(busybox_layout, session=session).with_env_variable("SALT", salt)
        c = c.with_exec(["sh", "-c", "echo 1 > /one"])
        c = c.with_exec(["sh", "-c", second])
        return c.with_exec(["sh", "-c", "cat /one /two"])

    first = pipeline("echo 2 > /two")
    assert first.stage is not None and set(first.stage.inputs) == {"stack"}  # one input
    assert built_names(session, first.stage) == (["exec-sh", "exec-sh", "exec-sh"], 0)
    again = pipeline("echo 2 > /two")  # made anew, as by a new program
    assert built_names(session, again.stage) == ([], 3)
    changed = pipeline("echo 22 > /two")
    assert built_names(session, changed.stage) == (["exec-sh", "exec-sh"], 1)
    assert changed.stdout() == "1\n22\n"
    # cache volumes and secrets are not part of the identity: still nothing to run
    decorated = (
        import_image(busybox_layout, session=session)
        .with_env_variable("SALT", salt)
        .with_mounted_cache("/cache", cache_volume("rerun"))
        .with_secret_variable("S", secret("rerun-secret", "x"))
        .with_exec(["sh", "-c", "echo 1 > /one"])
    )
    assert built_names(session, decorated.stage) == ([], 1)


# -- Must show 3: secrets ---------------------------------------------------------------------


def test_secret_variables_reach_the_exec_and_are_masked(base: Container) -> None:
    value = f"hunter2-{uuid.uuid4().hex}"
    ctr = base.with_secret_variable("TOKEN", secret("api-token", value)).with_exec(
        ["sh", "-c", 'echo "token: $TOKEN"; printf %s "$TOKEN" | sha256sum; echo "$TOKEN" >&2']
    )
    out = ctr.stdout()
    assert out.startswith("token: ***\n")
    assert hashlib.sha256(value.encode()).hexdigest() in out
    assert ctr.stderr() == "***\n"
    os.environ["DIRACX_TEST_SECRET_VAR"] = value
    try:
        from_env = base.with_secret_variable(
            "TOKEN", secret_from_env("api-token", "DIRACX_TEST_SECRET_VAR")
        ).with_exec(["sh", "-c", 'printf %s "$TOKEN" | sha256sum'])
        assert hashlib.sha256(value.encode()).hexdigest() in from_env.stdout()
    finally:
        del os.environ["DIRACX_TEST_SECRET_VAR"]
    unset = base.with_secret_variable("T", secret_from_env("other", "DIRACX_NOT_SET_ANYWHERE"))
    with pytest.raises(Exception, match="DIRACX_NOT_SET_ANYWHERE, which is not set"):
        unset.with_exec(["true"]).sync()
    assert "hunter2" not in repr(secret("x", value))


def test_a_secret_is_in_no_log_store_object_row_or_response(
    embedded_engine: EngineProcess, data_dir: Path, busybox_layout: Path
) -> None:
    """The secret works in the exec; then every file of the engine's data directory (store
    objects, logs, the database and its WAL), every row of every table and every API
    response the client received or can get is searched for it."""
    value = f"s3cr3t-{uuid.uuid4().hex}"
    responses: list[bytes] = []

    async def record(response: Any) -> None:
        await response.aread()
        responses.append(response.content)

    with connect() as s:
        s.async_session.client._http.event_hooks["response"].append(record)
        ctr = (
            import_image(busybox_layout, session=s)
            .with_secret_variable("TOKEN", secret("the-token", value))
            .with_exec(
                ["sh", "-c", 'echo "$TOKEN"; echo "$TOKEN" >&2; printf %s "$TOKEN" | sha256sum']
            )
        )
        _, result = s.run(ctr.stage)
        assert result.ok, result.failures
        assert hashlib.sha256(value.encode()).hexdigest() in ctr.stdout(session=s)
        failing = (
            import_image(busybox_layout, session=s)
            .with_secret_variable("TOKEN", secret("the-token", value))
            .with_exec(["sh", "-c", 'echo "failed with $TOKEN" >&2; exit 1'])
        )
        with pytest.raises(PipelineFailedError) as info:
            failing.sync(session=s)
        assert value not in str(info.value) and "failed with ***" in str(info.value)
        # every read the API offers about what ran
        pipeline_ids = {result.pipeline.id, info.value.result.pipeline.id}
        for pid in pipeline_ids:
            info_ = s.pipeline(pid)
            for stage in info_.stages:
                if stage.job_id is not None:
                    job = s.job(stage.job_id)
                    responses.append(job.model_dump_json().encode())
                    responses.append(s.job_log(stage.job_id).encode())
                if stage.rref:
                    r = s.realization(stage.rref)
                    for name in r.files():
                        responses.append(r.read_bytes(name))
        s.async_session.client._http.event_hooks["response"].remove(record)
    needle = value.encode()
    assert responses and not [r for r in responses if needle in r]
    leaks = []
    for path in data_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            try:
                if needle in path.read_bytes():
                    leaks.append(str(path))
            except OSError:
                continue
    assert leaks == []
    db = sqlite3.connect(data_dir / "diracx.db")
    try:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = 0
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                rows += 1
                assert not any(needle in str(v).encode() for v in row), table
        assert rows > 0
        assert db.execute("SELECT COUNT(*) FROM job_secrets").fetchone()[0] == 0  # jobs ended
    finally:
        db.close()


# -- Must show 4: network ---------------------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        thread.join()


def test_no_network_unless_asked(base: Container, http_server: int) -> None:
    probe = f"printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 {http_server} | head -1; echo done"
    closed = base.with_exec(["sh", "-c", probe])
    assert closed.stdout() == "done\n"
    opened = base.with_network().with_exec(["sh", "-c", probe])
    assert opened.stdout().startswith("HTTP/1.0 200")


# -- directories, files and stages, both ways -------------------------------------------------


def test_directories_and_files_mix_with_stages(
    base: Container, session: Session, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    (project / "pkg").mkdir(parents=True)
    (project / "pkg" / "mod.txt").write_text("module\n")
    (project / "junk.pyc").write_text("junk")
    (project / "tool.sh").write_text("#!/bin/sh\necho tool ran\n")
    (project / "tool.sh").chmod(0o755)
    src = host().directory(project, exclude=["*.pyc"])
    ctr = (
        base.with_directory("/src", src)
        .with_file("/usr/local/bin/tool", host().file(project / "tool.sh"))
        .with_new_file("/etc/motd", "welcome\n")
        .with_exec(["sh", "-c", "ls -A /src; tool; cat /etc/motd"])
    )
    assert ctr.stdout() == "pkg\ntool.sh\ntool ran\nwelcome\n"
    # a container's directory is a stage input...
    built = ctr.with_exec(["sh", "-c", "mkdir -p /dist && echo artifact > /dist/a.txt"])
    dist = built.directory("/dist")
    consume = command(
        "consume", ["sh", "-c", 'cat "$IN_DIST/a.txt" > "$OUT/got"'], inputs={"dist": dist}
    )
    assert session.realize(consume).read_text("got") == "artifact\n"
    # ...and a stage's output goes into a container
    back = base.with_directory("/from-stage", consume).with_exec(["cat", "/from-stage/got"])
    assert back.stdout() == "artifact\n"
    # parts of directories, files, exports
    assert dist.entries() == ["a.txt"]
    assert built.file("/dist/a.txt").contents() == "artifact\n"
    assert ctr.directory("/src").directory("pkg").file("mod.txt").contents() == "module\n"
    exported = ctr.directory("/src").export(tmp_path / "exported")
    assert sorted(p.name for p in exported.iterdir()) == ["pkg", "tool.sh"]
    assert os.access(exported / "tool.sh", os.X_OK)
    only_pkg = base.with_directory("/x", ctr.directory("/src"), exclude=["tool.sh"])
    assert only_pkg.with_exec(["ls", "/x"]).stdout() == "pkg\n"
    mounted = base.with_mounted_directory("/m", dist).with_exec(["cat", "/m/a.txt"])
    assert mounted.stdout() == "artifact\n"
    on_host = src.export(tmp_path / "host-copy")
    assert sorted(p.name for p in on_host.iterdir()) == ["pkg", "tool.sh"]


PYTHON_STAGES = """
from pathlib import Path

from diracx.api import stage


@stage
def listing(tree, out):
    names = sorted(p.name for p in Path(tree).iterdir())
    (Path(out) / "names.txt").write_text("\\n".join(names) + "\\n")
    return len(names)
"""


def test_python_stages_take_and_give_directories(
    base: Container, session: Session, tmp_path: Path
) -> None:
    import importlib.util

    path = tmp_path / "container_python_stages.py"
    path.write_text(PYTHON_STAGES)
    spec = importlib.util.spec_from_file_location("container_python_stages", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    made = base.with_exec(["sh", "-c", "mkdir -p /out && touch /out/x /out/y"])
    listed = module.listing(tree=made.directory("/out"))
    assert session.realize(listed).result() == 2
    back = base.with_directory("/listed", listed).with_exec(["cat", "/listed/names.txt"])
    assert back.stdout() == "x\ny\n"


def test_cache_volumes_outlive_pipelines(base: Container) -> None:
    name = f"counter-{uuid.uuid4().hex[:8]}"
    cache = cache_volume(name)

    def count(i: int) -> str:
        step = base.with_mounted_cache("/cache", cache).with_exec(
            ["sh", "-c", f"echo {i} >> /cache/n; wc -l < /cache/n"]
        )
        return step.stdout().strip()

    assert [count(1), count(2)] == ["1", "2"]
    private = base.with_mounted_cache("/cache", cache, sharing="private")
    assert private.with_exec(["sh", "-c", "echo 3 >> /cache/n; wc -l < /cache/n"]).stdout() == "3\n"
    assert count(4) == "3"  # the private exec's line was dropped


def test_a_timeout_fails_the_step(base: Container) -> None:
    with pytest.raises(PipelineFailedError, match="timed out after 1 s"):
        base.with_exec(["sleep", "30"], timeout=1).sync()


def test_export_and_import_an_image(base: Container, tmp_path: Path) -> None:
    built = base.with_exec(["sh", "-c", "echo kept > /kept"]).with_entrypoint(["/bin/sh"])
    layout = tmp_path / "layout"
    digest = built.export_image(layout)
    assert digest.startswith("sha256:") and (layout / "index.json").exists()
    again = import_image(layout).with_exec(["cat", "/kept"])
    assert again.stdout() == "kept\n"
    archive = tmp_path / "image.tar"
    assert built.export(archive) == digest  # the same image, as a docker-load tarball
    with tarfile.open(archive) as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert len(manifest[0]["Layers"]) == len(built.image().layers)
    config_digest = hashlib.sha256(built.image().config_bytes()).hexdigest()
    config = json.loads((layout / "blobs" / "sha256" / config_digest).read_bytes())
    assert config["config"]["Entrypoint"] == ["/bin/sh"]
    assert any("echo kept" in (h.get("created_by") or "") for h in config["history"])


def test_a_closure_carries_every_layer_of_a_step(
    session: Session, base: Container, tmp_path: Path
) -> None:
    """The last step's ``stack.json`` lists the image's layers and each step's: all of
    them are blobs of its exported closure (they come in as its inputs' trees)."""
    top = base.with_exec(["sh", "-c", "echo one > /one"]).with_exec(["sh", "-c", "echo two > /two"])
    assert top.stage is not None
    realization = session.realize(top.stage)
    stack = json.loads(realization.read_bytes(STACK_FILE))
    assert len(stack) == len(base.image().layers) + 2
    closure = session.store.export([realization.rref], tmp_path / "closure.tar")
    assert {layer["digest"] for layer in stack} <= set(closure.blobs)
    assert all(closure.blobs[layer["digest"]] == layer["size"] for layer in stack)


# -- the example ----------------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ci_pipeline" / "pipeline.py"


def test_the_ci_pipeline_example(
    module_engine: EngineProcess, busybox_layout: Path, tmp_path: Path
) -> None:
    """examples/ci_pipeline on the local busybox image: tests pass with the cache volume,
    the package is exported; the second run executes nothing and reuses the package."""

    def run(out: Path) -> str:
        proc = subprocess.run(
            [sys.executable, str(EXAMPLE), "--image", str(busybox_layout), "--out", str(out)],
            capture_output=True,
            text=True,
            env={**os.environ, "DIRACX_DATA_DIR": str(module_engine.data_dir)},
            timeout=240,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    first = run(tmp_path / "dist1")
    assert "5 passed, 0 failed" in first
    assert "corpus: generated" in first or "corpus: reused from the cache" in first
    package = tmp_path / "dist1" / "wordfreq-1.0.0.tar.gz"
    assert package.is_file()
    with tarfile.open(package) as tar:
        assert {"bin/wordfreq", "VERSION"} <= set(tar.getnames())
    second = run(tmp_path / "dist2")
    assert second.replace(str(tmp_path / "dist2"), "") == first.replace(str(tmp_path / "dist1"), "")
    assert (tmp_path / "dist2" / "wordfreq-1.0.0.tar.gz").read_bytes() == package.read_bytes()
