"""Benchmark the store: ingesting outputs against hashlib, and planning a cached pipeline.

    uv run --no-sync python benchmarks/bench_store.py                # 1 GiB, 1000 stages
    uv run --no-sync python benchmarks/bench_store.py --quick        # 128 MiB, 200 stages
    uv run --no-sync python benchmarks/bench_store.py --only ingest --size 2
    uv run --no-sync python benchmarks/bench_store.py --only plan --stages 1000 --json out.json

ingest: a directory of outputs (half of the bytes in many small files, half in a
few large ones, random bytes) is ingested into a fresh LocalStore with
``diracx.core.tree.ingest_directory``, the way a worker does (``move=True``: the
files are renamed into the store) and as a copy; compared in the same run with
``hashlib.sha256`` over the same bytes, in memory and read from the same files.

plan: a fresh embedded engine builds a pipeline of N no-op stages (a chain, each
the input of the next, and N independent ones); then the fully cached pipeline is
planned again: server side (parsing the body the client sends as the service does,
then the submit handler's work: re-deriving every DRef, checking trees, the one
submit transaction) in this process on the engine's database, and end to end
(``session.run`` of new Stage objects on the embedded engine, as a new run of the
program does). A service keeps the derivations it validated, by document: the
first submission a process parses validates and hashes each stage ("first"), the
next ones only look them up (the median; the engine has seen them when it built
them).

Everything lives in a temporary directory beside the user's data directory (the
same filesystem), removed at the end. See benchmarks/README.md for the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diracx.core.settings import default_data_dir

MiB = 1024 * 1024
TARGETS = {
    "ingest_ratio": ("≥", 0.8),
    "plan_server_ms": ("≤", 50.0),
    "plan_end_to_end_s": ("≤", 0.3),
}


def line(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<52} {value:>14}  {note}".rstrip())


def verdict(key: str, value: float) -> str:
    op, target = TARGETS[key]
    ok = value >= target if op == "≥" else value <= target
    return f"target {op} {target:g}: {'met' if ok else 'NOT met'}"


def gbps(nbytes: int, seconds: float) -> str:
    return f"{nbytes / seconds / 1e9:.2f} GB/s"


def best(times: list[float]) -> float:
    return min(times)


# --------------------------------------------------------------------------- ingest


def make_outputs(root: Path, total: int, rng_seed: int = 7) -> tuple[int, int]:
    """Half of *total* in files of 4-60 KiB (many), half in four large files. Returns
    (number of files, bytes)."""
    import random

    rng = random.Random(rng_seed)
    small_budget = total // 2
    written = 0
    count = 0
    i = 0
    while written < small_budget:
        size = min(rng.randint(4, 60) * 1024, small_budget - written)
        d = root / "small" / f"{i // 500:03d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:06d}.dat").write_bytes(os.urandom(size))
        written += size
        count += 1
        i += 1
    large = total - written
    for k in range(4):
        size = large // 4 + (large % 4 if k == 3 else 0)
        path = root / "large" / f"part-{k}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            left = size
            while left:
                chunk = os.urandom(min(left, 16 * MiB))
                f.write(chunk)
                left -= len(chunk)
        written += size
        count += 1
    return count, written


def all_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def hash_in_memory(files: list[Path]) -> tuple[float, int]:
    """sha256 of each file's bytes, already in memory (reading not timed)."""
    total = 0.0
    size = 0
    for path in files:
        data = path.read_bytes()
        t = time.perf_counter()
        hashlib.sha256(data).hexdigest()
        total += time.perf_counter() - t
        size += len(data)
    return total, size


def hash_files(files: list[Path]) -> float:
    """sha256 of each file read in 1 MiB chunks (as hash_file does), reading timed."""
    t = time.perf_counter()
    for path in files:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(MiB):
                h.update(chunk)
        h.hexdigest()
    return time.perf_counter() - t


def ingest_once(source: Path, scratch: Path, *, move: bool) -> tuple[float, str]:
    """Ingest a fresh copy (hard links, for move) of *source* into a fresh store."""
    from diracx.core.store import LocalStore
    from diracx.core.tree import ingest_directory

    store_dir = scratch / "store"
    work = scratch / "work"
    shutil.rmtree(store_dir, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    store = LocalStore(store_dir)
    root = source
    if move:
        subprocess.run(["cp", "-al", str(source), str(work)], check=True)
        root = work
    os.sync()
    t = time.perf_counter()
    tree = ingest_directory(store, root, move=move)
    elapsed = time.perf_counter() - t
    shutil.rmtree(work, ignore_errors=True)
    return elapsed, tree.digest


def bench_ingest(args: argparse.Namespace, scratch: Path, results: dict[str, Any]) -> None:
    total = int(args.size * 1024 * MiB)
    print(f"\ningest: {total / MiB:.0f} MiB of outputs into a LocalStore")
    source = scratch / "outputs"
    t = time.perf_counter()
    count, size = make_outputs(source, total)
    line("make the outputs (random bytes, not timed below)", f"{time.perf_counter() - t:.1f} s")
    line("files", f"{count}", f"{size / MiB:.0f} MiB")
    files = all_files(source)
    repeats = args.repeats
    mem = [hash_in_memory(files)[0] for _ in range(repeats)]
    read = [hash_files(files) for _ in range(repeats)]
    moved: list[float] = []
    copied: list[float] = []
    digests = set()
    for _ in range(repeats):
        elapsed, digest = ingest_once(source, scratch, move=True)
        moved.append(elapsed)
        digests.add(digest)
        elapsed, digest = ingest_once(source, scratch, move=False)
        copied.append(elapsed)
        digests.add(digest)
    if len(digests) != 1:
        raise SystemExit(f"ingests gave different trees: {digests}")
    h_mem, h_read, i_move, i_copy = best(mem), best(read), best(moved), best(copied)
    line("hashlib.sha256, bytes in memory", gbps(size, h_mem), f"{h_mem:.3f} s")
    line("hashlib.sha256, reading the same files", gbps(size, h_read), f"{h_read:.3f} s")
    line("ingest_directory(move=True), as a worker does", gbps(size, i_move), f"{i_move:.3f} s")
    line("ingest_directory(), a copy", gbps(size, i_copy), f"{i_copy:.3f} s")
    ratio = h_mem / i_move
    line(
        "ratio ingest (move) / hashlib in memory",
        f"{ratio:.2f}",
        verdict("ingest_ratio", ratio),
    )
    line("ratio ingest (move) / hashlib reading files", f"{h_read / i_move:.2f}")
    line("ratio ingest (copy) / hashlib in memory", f"{h_mem / i_copy:.2f}")
    print(f"  (best of {repeats} runs each; page cache warm for all)")
    parts: dict[str, Any] = {}
    for part in ("small", "large"):
        part_files = all_files(source / part)
        part_mem = best([hash_in_memory(part_files)[0] for _ in range(repeats)])
        part_bytes = sum(p.stat().st_size for p in part_files)
        part_move = best(
            [ingest_once(source / part, scratch, move=True)[0] for _ in range(repeats)]
        )
        overhead = (part_move - part_mem) / len(part_files) * 1e6
        line(
            f"{part} files only ({len(part_files)}): ingest (move) / hashlib",
            f"{part_mem / part_move:.2f}",
            f"{gbps(part_bytes, part_move)} vs {gbps(part_bytes, part_mem)}; "
            f"{overhead:.0f} µs a file over hashing",
        )
        parts[part] = {
            "files": len(part_files),
            "bytes": part_bytes,
            "hashlib_memory_s": part_mem,
            "ingest_move_s": part_move,
        }
    results["ingest"] = {
        "bytes": size,
        "files": count,
        "hashlib_memory_s": h_mem,
        "hashlib_files_s": h_read,
        "ingest_move_s": i_move,
        "ingest_copy_s": i_copy,
        "ingest_ratio": ratio,
        "ingest_copy_ratio": h_mem / i_copy,
        "runs": {"memory": mem, "files": read, "move": moved, "copy": copied},
        "parts": parts,
    }
    shutil.rmtree(source, ignore_errors=True)
    shutil.rmtree(scratch / "store", ignore_errors=True)


# --------------------------------------------------------------------------- plan


def noop_stages(prefix: str, count: int, *, chained: bool) -> list[Any]:
    from diracx.api import command

    stages: list[Any] = []
    prev = None
    for i in range(count):
        if chained:
            prev = command(f"{prefix}-{i}", ["true"], inputs={"prev": prev} if prev else None)
            stages.append(prev)
        else:
            stages.append(command(f"{prefix}-{i}", ["true"]))
    return stages


def timed(fn: Callable[[], Any], repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


async def server_side(data_dir: Path, body: bytes, repeats: int) -> dict[str, list[float]]:
    """The submit handler's work on the engine's database, without HTTP: parse the body
    (as FastAPI does: ``json.loads``, then validation), re-derive and check
    (``logic.submit``: instantiate, the submit transaction)."""
    from diracx.core.derivation import PipelineSubmission, plan_order
    from diracx.core.settings import ServiceSettings
    from diracx.db.os import open_store
    from diracx.db.pipelines import PipelineDB
    from diracx.routers.auth import LOCAL_USER
    from diracx.routers.logic import submit
    from diracx.routers.queue import RecordingJobQueue

    settings = ServiceSettings(data_dir=data_dir)
    db = PipelineDB.from_settings(settings)
    store = open_store(settings)
    queue = RecordingJobQueue()
    out: dict[str, list[float]] = {"parse": [], "handler": [], "transaction": []}
    # As the service does once started (``diracx.routers.factory``): what exists now is
    # left out of the garbage collector's full passes (each would add 100 ms here).
    gc.freeze()
    try:
        for _ in range(repeats):
            t = time.perf_counter()
            submission = PipelineSubmission.model_validate(json.loads(body))
            out["parse"].append(time.perf_counter() - t)
            t = time.perf_counter()
            info = await submit(submission, LOCAL_USER, db, store, queue, limits=None)
            out["handler"].append(time.perf_counter() - t)
            if info.counts.get("cached") != len(submission.derivations):
                raise SystemExit(f"not fully cached: {info.counts}")
            ordered = plan_order(submission)
            t = time.perf_counter()
            await db.submit("bench", ordered, submission.targets)
            out["transaction"].append(time.perf_counter() - t)
    finally:
        gc.unfreeze()
        await db.close()
    if queue.sent:
        raise SystemExit(f"a cached pipeline queued jobs: {queue.sent}")
    return out


def bench_plan(args: argparse.Namespace, scratch: Path, results: dict[str, Any]) -> None:
    n = args.stages
    data_dir = scratch / "engine"
    data_dir.mkdir()
    for var in ("DIRACX_URL", "DIRACX_TOKEN", "DIRACX_DB_URL", "DIRACX_BROKER_URL"):
        os.environ.pop(var, None)
    os.environ.pop("DIRACX_STORE_PATH", None)
    os.environ["DIRACX_DATA_DIR"] = str(data_dir)
    os.environ.setdefault("DIRACX_ENGINE_IDLE_TIMEOUT", "120")
    from diracx.api import connect, instantiate
    from diracx.client.client import submission_body

    print(f"\nplan: a fully cached pipeline of {n} stages (embedded engine, SQLite)")
    session = connect()
    try:
        for shape, chained in (("chain", True), ("wide", False)):
            t = time.perf_counter()
            targets = noop_stages(shape, n, chained=chained)
            target = targets[-1] if chained else targets
            _, first = session.run(target)
            if not first.ok:
                raise SystemExit(f"the first run failed: {first.summary()}")
            built_s = time.perf_counter() - t
            line(f"{shape}: first run builds them (not timed below)", f"{built_s:.1f} s")

            walls = []
            for _ in range(args.repeats):
                fresh = noop_stages(shape, n, chained=chained)
                t = time.perf_counter()
                _, result = session.run(fresh[-1] if chained else fresh)
                walls.append(time.perf_counter() - t)
                if len(result.cached()) != n:
                    raise SystemExit(f"the re-run was not fully cached: {result.summary()}")
            fresh = noop_stages(shape, n, chained=chained)
            inst = instantiate(fresh[-1] if chained else fresh)
            t = time.perf_counter()
            instantiate(noop_stages(shape, n, chained=chained))
            inst_s = [time.perf_counter() - t]
            body = submission_body(inst.submission)  # what the client sends
            server = asyncio.run(server_side(data_dir, body, args.repeats))
            handler = [p + h for p, h in zip(server["parse"], server["handler"], strict=True)]
            line(
                f"{shape}: server, submit transaction",
                f"{statistics.median(server['transaction']) * 1000:.1f} ms",
                f"median of {args.repeats}; min {min(server['transaction']) * 1000:.1f} ms",
            )
            line(
                f"{shape}: server, handler (parse + check + transaction)",
                f"{statistics.median(handler) * 1000:.1f} ms",
                verdict("plan_server_ms", statistics.median(handler) * 1000)
                + f"; first {handler[0] * 1000:.1f} ms",
            )
            line(
                f"{shape}: end to end, session.run (new Stage objects)",
                f"{statistics.median(walls):.3f} s",
                verdict("plan_end_to_end_s", statistics.median(walls))
                + f"; first {walls[0]:.3f} s",
            )
            line(f"{shape}: of which client instantiate + DSL", f"{inst_s[0]:.3f} s")
            results[f"plan_{shape}"] = {
                "stages": n,
                "transaction_s": server["transaction"],
                "parse_s": server["parse"],
                "handler_s": server["handler"],
                "end_to_end_s": walls,
                "instantiate_s": inst_s[0],
            }
    finally:
        session.close()
        doc = data_dir / "engine.json"
        if doc.exists():
            pid = int(json.loads(doc.read_text())["pid"])
            try:
                os.kill(pid, 15)
                for _ in range(200):
                    os.kill(pid, 0)
                    time.sleep(0.05)
            except ProcessLookupError:
                pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=float, default=None, help="GiB to ingest (default 1)")
    parser.add_argument("--stages", type=int, default=None, help="stages to plan (default 1000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement")
    parser.add_argument("--quick", action="store_true", help="128 MiB and 200 stages")
    parser.add_argument("--only", choices=["ingest", "plan"], default=None)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    args.size = args.size or (0.125 if args.quick else 1.0)
    args.stages = args.stages or (200 if args.quick else 1000)
    print("DiracX store benchmark")
    print(
        f"machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average at start "
        f"{os.getloadavg()[0]:.2f} (other processes may be running)"
    )
    parent = default_data_dir().parent
    parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="diracx-bench-store-", dir=parent))
    results: dict[str, Any] = {}
    try:
        if args.only in (None, "ingest"):
            bench_ingest(args, scratch, results)
        if args.only in (None, "plan"):
            bench_plan(args, scratch, results)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
