"""Benchmark container steps: the overhead of ``with_exec(["true"])`` on a cached image.

    sudo uv run python benchmarks/bench_oci.py              # 200 execs of each kind
    sudo uv run python benchmarks/bench_oci.py --quick      # 40
    sudo uv run python benchmarks/bench_oci.py -n 500 --json out.json

Needs root (the ``oci`` executor mounts overlays and makes namespaces) and
Debian's static busybox (``/usr/bin/busybox``), packed here as a one-layer image.
Everything runs against a fresh embedded engine in a temporary DIRACX_DATA_DIR,
stopped and removed at the end. See benchmarks/README.md for what each figure means.

The image is imported and one exec is run first, so the layer is unpacked into the
worker's cache and the sandbox helper is started: every timed exec is "fresh" (a
new derivation: each has an environment variable of its own) on a cached image.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_MS = 50.0  # per exec, beyond the command itself


def line(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<52} {value:>12}  {note}".rstrip())


def busybox_layout(dest: Path) -> Path:
    """An OCI layout of one layer: busybox and a symlink per applet."""
    from diracx.core.oci import Image, ImageConfig, Layer, write_oci_layout

    busybox = shutil.which("busybox") or "/usr/bin/busybox"
    applets = subprocess.run([busybox, "--list"], capture_output=True, text=True).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, mode in (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("root", 0o700)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        data = Path(busybox).read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in applets:
            if applet != "busybox":
                info = tarfile.TarInfo(f"bin/{applet}")
                info.type, info.linkname = tarfile.SYMTYPE, "busybox"
                tar.addfile(info)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        tar.addfile(info, io.BytesIO(passwd))
    blob = buf.getvalue()
    digest = hashlib.sha256(blob).hexdigest()
    (dest / digest).write_bytes(blob)
    image = Image(
        config=ImageConfig(env=["PATH=/bin"]),
        layers=[Layer(digest=digest, size=len(blob), diff_id=digest)],
    )

    def open_blob(d: str) -> Any:
        return open(dest / d, "rb")

    write_oci_layout(image, open_blob, dest / "layout")
    return dest / "layout"


def time_true(n: int) -> float:
    """Seconds per ``subprocess.run(["true"])``: the command itself, run directly."""
    start = time.perf_counter()
    for _ in range(n):
        subprocess.run(["true"], check=True)
    return (time.perf_counter() - start) / n


def time_executor(n: int, layout: Path, work: Path) -> list[float]:
    """Seconds per build of the ``oci`` executor alone (no engine, no database, no HTTP)."""
    from diracx.core.derivation import Derivation
    from diracx.core.oci import read_oci_layout
    from diracx.core.store import LocalStore
    from diracx.core.tree import Tree, TreeEntry
    from diracx.tasks.executors.base import BuildRequest, prepare_scratch, remove_scratch
    from diracx.tasks.executors.oci import OciExecutor

    store = LocalStore(work / "store")
    image, blobs = read_oci_layout(layout)
    layer = image.layers[0]
    store.put_file(blobs[layer.digest])
    tree = Tree({"layer.tar": TreeEntry("file", layer.digest, layer.size)})
    store.put_bytes(tree.manifest_bytes())
    executor = OciExecutor()
    times: list[float] = []

    async def run() -> None:
        for i in range(n + 1):
            drv = Derivation(
                name="exec-true",
                builder={
                    "executor": "oci",
                    "layers": ["l"],
                    "argv": ["true"],
                    "env": {"I": str(i)},
                },
                inputs={"l": {"tree": tree.digest}},
            )
            scratch = work / f"s{i}"
            start = time.perf_counter()
            prepare_scratch(scratch, drv)
            request = BuildRequest(
                i, drv.dref, drv, scratch, store=store, inputs={"l": tree.digest}, data_dir=work
            )
            result = await executor.build(request)
            remove_scratch(scratch)
            if not result.ok:
                raise SystemExit(f"the exec failed: {result.reason}")
            if i:  # the first one unpacks the layer and starts the sandbox helper
                times.append(time.perf_counter() - start)

    asyncio.run(run())
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=200, help="execs of each kind")
    parser.add_argument("--quick", action="store_true", help="40 execs of each kind")
    parser.add_argument("--json", type=Path, help="write the figures there too")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)
    n = 40 if args.quick else args.n
    if os.geteuid() != 0:
        print(
            "bench_oci: the oci executor needs root (overlay mounts, namespaces)", file=sys.stderr
        )
        return 2
    work = Path(tempfile.mkdtemp(prefix="diracx-bench-oci-"))
    data_dir = work / "data"
    os.environ["DIRACX_DATA_DIR"] = str(data_dir)
    for name in ("DIRACX_URL", "DIRACX_TOKEN"):
        os.environ.pop(name, None)
    figures: dict[str, float] = {}
    try:
        (work / "image").mkdir()
        layout = busybox_layout(work / "image")
        print(f"bench_oci: {n} execs of each kind; load average {os.getloadavg()[0]:.2f}")

        per_true = time_true(n)
        figures["true_ms"] = per_true * 1000
        line("run `true` directly (subprocess.run)", f"{per_true * 1000:.2f} ms")

        (work / "executor").mkdir()
        alone = time_executor(n, layout, work / "executor")
        figures["executor_ms"] = statistics.median(alone) * 1000
        line(
            "oci executor alone, one build (median)",
            f"{figures['executor_ms']:.2f} ms",
            f"(p90 {sorted(alone)[int(len(alone) * 0.9)] * 1000:.1f} ms)",
        )

        from diracx.api import connect, import_image

        with connect() as session:
            base = import_image(layout, session=session)
            base.with_exec(["true"]).sync()  # unpack the layer, start the sandbox helper

            # one exec per pipeline, one after the other: the latency a user sees
            single = []
            for i in range(n):
                step = base.with_env_variable("I", f"single-{i}").with_exec(["true"])
                start = time.perf_counter()
                _, result = session.run(step.stage)
                single.append(time.perf_counter() - start)
                assert result.ok and len(result.built()) == 1, result.failures
            figures["single_ms"] = statistics.median(single) * 1000
            line("one exec per pipeline, end to end (median)", f"{figures['single_ms']:.2f} ms")

            # a chain: each exec on the layers of all the earlier ones
            chain = base.with_env_variable("RUN", "chain")
            for i in range(n):
                chain = chain.with_env_variable("I", str(i)).with_exec(["true"])
            start = time.perf_counter()
            _, result = session.run(chain.stage)
            chained = time.perf_counter() - start
            assert result.ok and len(result.built()) == n, result.failures
            figures["chain_ms"] = chained / n * 1000
            line(f"chain of {n} execs, per exec", f"{figures['chain_ms']:.2f} ms")

            # independent execs in one pipeline: throughput on the worker's slots
            wide = [base.with_env_variable("I", f"wide-{i}").with_exec(["true"]) for i in range(n)]
            start = time.perf_counter()
            _, result = session.run([c.stage for c in wide])
            spread = time.perf_counter() - start
            assert result.ok and len(result.built()) == n, result.failures
            figures["wide_ms"] = spread / n * 1000
            line(f"{n} independent execs in one pipeline, per exec", f"{figures['wide_ms']:.2f} ms")

            # the same chain again: nothing runs
            start = time.perf_counter()
            _, result = session.run(chain.stage)
            figures["cached_chain_ms"] = (time.perf_counter() - start) * 1000
            assert result.ok and not result.built()
            line(
                f"the chain again (all {n} cached), end to end",
                f"{figures['cached_chain_ms']:.1f} ms",
            )

        overhead = figures["chain_ms"] - figures["true_ms"]
        figures["overhead_ms"] = overhead
        verdict = "met" if overhead <= TARGET_MS else "NOT met"
        print()
        line(
            "overhead per exec beyond the command (chain)",
            f"{overhead:.2f} ms",
            f"target ≤ {TARGET_MS:g} ms: {verdict}",
        )
        line(
            "overhead, one exec per pipeline",
            f"{figures['single_ms'] - figures['true_ms']:.2f} ms",
        )
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        return 0
    finally:
        _stop_engine(data_dir)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def _stop_engine(data_dir: Path) -> None:
    try:
        doc = json.loads((data_dir / "engine.json").read_text())
    except (OSError, ValueError):
        return
    pid = doc.get("pid")
    if isinstance(pid, int):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        for _ in range(200):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
