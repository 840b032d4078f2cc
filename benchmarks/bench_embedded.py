"""Benchmark the embedded engine with no-op command stages: wide, chained, cached, cold start.

    uv run python benchmarks/bench_embedded.py                 # 1000 wide, 200 chained
    uv run python benchmarks/bench_embedded.py --quick         # 100 wide, 20 chained
    uv run python benchmarks/bench_embedded.py --wide 500 --chain 50 --json out.json
    uv run --with py-spy python benchmarks/bench_embedded.py --profile

Everything runs against a fresh engine in a temporary DIRACX_DATA_DIR, which is
removed at the end (the engine is stopped with SIGTERM first). See
benchmarks/README.md for what each figure means and the targets.

``--profile`` adds a breakdown of where the time goes: wall-clock timers around
the engine's, worker's and client's main functions (benchmarks/probe/, loaded
into the engine through PYTHONPATH; no product code changes), a sampling profile
of all three processes with py-spy when it is installed, and the import times of
the engine's start. Timings taken with --profile are a little slower than without.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from diracx.core.settings import default_data_dir

HERE = Path(__file__).resolve().parent
PROBE_DIR = HERE / "probe"
PROBE_ENV = "DIRACX_BENCH_PROBE"

TARGETS = {
    "wide_stages_per_s": ("≥", 600.0),
    "chain_ms_per_hop": ("≤", 3.0),
    "cached_rerun_s": ("≤", 0.3),
    "cold_start_s": ("≤", 1.5),
}


# --------------------------------------------------------------------------- output


def line(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<46} {value:>14}  {note}".rstrip())


def heading(text: str) -> None:
    print(f"\n{text}")


def verdict(key: str, value: float) -> str:
    op, target = TARGETS[key]
    ok = value >= target if op == "≥" else value <= target
    unit = {"wide_stages_per_s": "/s", "chain_ms_per_hop": " ms"}.get(key, " s")
    return f"target {op} {target:g}{unit}: {'met' if ok else 'NOT met'}"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def secs(seconds: float) -> str:
    return f"{seconds:.3f} s"


def mib(kib: int | None) -> str:
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


# --------------------------------------------------------------------------- processes


def rss_kib(pid: int) -> int | None:
    """VmRSS of *pid* in KiB (from /proc; psutil is not a dependency)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for row in f:
                if row.startswith("VmRSS:"):
                    return int(row.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return None


def children(pid: int) -> list[int]:
    """Direct children of *pid*."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # the command name is in parentheses and may hold spaces
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return " ".join(a.decode(errors="replace") for a in f.read().split(b"\0") if a)
    except OSError:
        return ""


def alive(pid: int) -> bool:
    """True while *pid* exists and is not a zombie (reaps it if it is our child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def stop_process(pid: int, timeout: float = 15.0) -> bool:
    """SIGTERM, wait, then SIGKILL; True if it stopped on SIGTERM."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    with suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return False


def worker_pid(engine_pid: int) -> int | None:
    for pid in children(engine_pid):
        if "diracx.tasks" in cmdline(pid):
            return pid
    return None


class MemorySampler:
    """Samples the RSS of the server and its worker in a thread; keeps the maxima."""

    def __init__(self, server: int, worker: int | None, interval: float = 0.02) -> None:
        self.server, self.worker, self.interval = server, worker, interval
        self.max_server = self.max_worker = self.max_total = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            s = rss_kib(self.server) or 0
            w = (rss_kib(self.worker) or 0) if self.worker else 0
            self.max_server = max(self.max_server, s)
            self.max_worker = max(self.max_worker, w)
            self.max_total = max(self.max_total, s + w)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float, float] | None:
    """(user, system, reaped children's user+system) CPU seconds of *pid*, all its threads."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    utime, stime, cutime, cstime = (int(x) / CLK_TCK for x in fields[11:15])
    return utime, stime, cutime + cstime


def machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(x) for x in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    total = sum(values[:8])
    return (total - idle) / CLK_TCK, total / CLK_TCK


class CpuMeter:
    """CPU used by each process of the engine (and the machine) over a phase."""

    def __init__(self, pids: dict[str, int | None]) -> None:
        self.pids = {k: v for k, v in pids.items() if v}
        self.used: dict[str, tuple[float, float, float]] = {}
        self.machine_busy = self.wall = 0.0

    def __enter__(self) -> CpuMeter:
        self._before = {k: cpu_times(p) for k, p in self.pids.items()}
        self._machine = machine_cpu()
        self._t = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._t
        busy, _ = machine_cpu()
        self.machine_busy = busy - self._machine[0]
        for k, p in self.pids.items():
            a, b = self._before[k], cpu_times(p)
            if a and b:
                self.used[k] = (b[0] - a[0], b[1] - a[1], b[2] - a[2])

    def report(self, per: int, label: str) -> dict[str, float]:
        cores = os.cpu_count() or 1
        parts = []
        out: dict[str, float] = {}
        ours = 0.0
        for name, (user, system, kids) in self.used.items():
            ours += user + system + kids
            text = f"{name} {(user + system) / per * 1000:.2f} ({user / per * 1000:.2f} user)"
            if name == "worker":
                text += f" + builds {kids / per * 1000:.2f}"
                out["builds_cpu_ms"] = kids / per * 1000
            parts.append(text)
            out[f"{name}_cpu_ms"] = (user + system) / per * 1000
        line(f"CPU ms {label} (user+sys)", "", "; ".join(parts))
        line(
            "machine CPU busy during the run",
            f"{self.machine_busy / self.wall / cores * 100:.0f}%",
            f"of {cores} cores; this benchmark's processes {ours / self.wall / cores * 100:.0f}%",
        )
        out["machine_busy_pct"] = self.machine_busy / self.wall / cores * 100
        out["ours_pct"] = ours / self.wall / cores * 100
        return out


# --------------------------------------------------------------------------- reference


def spawn_true(count: int) -> dict[str, float]:
    """The raw cost of one subprocess.run(["true"]) on this machine."""
    true = shutil.which("true") or "/bin/true"
    for _ in range(10):  # warm the page cache and the allocator
        subprocess.run([true], check=True)
    times = []
    for _ in range(count):
        t = time.perf_counter()
        subprocess.run([true], check=True)
        times.append(time.perf_counter() - t)
    return {"mean": statistics.fmean(times), "median": statistics.median(times)}


# --------------------------------------------------------------------------- the database


def db_rows(data_dir: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    import sqlite3

    conn = sqlite3.connect(f"file:{data_dir / 'diracx.db'}?mode=ro", uri=True, timeout=30)
    try:
        return list(conn.execute(sql, params))
    finally:
        conn.close()


def epoch(ts: str) -> float:
    """A timestamp as SQLite stores it (naive UTC) to seconds since the epoch."""
    return datetime.fromisoformat(ts).replace(tzinfo=UTC).timestamp()


@dataclass
class JobTimes:
    job_id: int
    name: str
    first: dict[str, float] = field(default_factory=dict)  # status -> first time
    last: dict[str, float] = field(default_factory=dict)


def job_times(data_dir: Path, pipeline_id: int) -> dict[int, JobTimes]:
    rows = db_rows(
        data_dir,
        "SELECT h.job_id, j.name, h.status, h.timestamp FROM job_status_history h "
        "JOIN jobs j ON j.id = h.job_id WHERE j.pipeline_id = ? ORDER BY h.id",
        (pipeline_id,),
    )
    out: dict[int, JobTimes] = {}
    for job_id, name, status, ts in rows:
        jt = out.setdefault(job_id, JobTimes(job_id, name))
        t = epoch(ts)
        jt.first.setdefault(status, t)
        jt.last[status] = t
    return out


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def transactions(times: dict[int, JobTimes], status: str) -> Counter[float]:
    """Jobs per distinct timestamp of *status*: each transaction stamps its jobs with one time."""
    return Counter(jt.first[status] for jt in times.values() if status in jt.first)


def db_breakdown_wide(data_dir: Path, pipeline_id: int, t_call: float, t_return: float) -> dict:
    times = job_times(data_dir, pipeline_id)
    received = min(jt.first["Received"] for jt in times.values())
    matched = [jt.first["Matched"] for jt in times.values() if "Matched" in jt.first]
    done = [jt.first["Done"] for jt in times.values() if "Done" in jt.first]
    claims = transactions(times, "Matched")
    starts = transactions(times, "Running")
    finishes = transactions(times, "Done")
    span = max(done) - min(matched)
    return {
        "jobs": len(times),
        "call_to_submit": received - t_call,
        "submit_to_first_claim": min(matched) - received,
        "first_claim_to_last_done": span,
        "last_done_to_return": t_return - max(done),
        "claim_transactions": len(claims),
        "start_transactions": len(starts),
        "finish_transactions": len(finishes),
        "jobs_per_finish": len(done) / max(1, len(finishes)),
        "jobs_per_claim": len(matched) / max(1, len(claims)),
        "ms_between_finishes": span / max(1, len(finishes) - 1) * 1000,
        "done_per_s_while_building": len(done) / span if span > 0 else float("inf"),
        "matched_to_done_median_ms": statistics.median(
            jt.first["Done"] - jt.first["Matched"]
            for jt in times.values()
            if "Done" in jt.first and "Matched" in jt.first
        )
        * 1000,
    }


def db_breakdown_chain(data_dir: Path, pipeline_id: int, t_call: float, t_return: float) -> dict:
    times = job_times(data_dir, pipeline_id)
    order = sorted(times.values(), key=lambda jt: int(jt.name.rsplit("-", 1)[1]))
    received = min(jt.first["Received"] for jt in order)
    hops, released, matched, runs = [], [], [], []
    for prev, nxt in itertools.pairwise(order):
        hops.append(nxt.first["Done"] - prev.first["Done"])
        released.append(nxt.first["Matched"] - prev.first["Done"])
    for jt in order:
        matched.append(jt.first["Running"] - jt.first["Matched"])
        runs.append(jt.first["Done"] - jt.first["Running"])
    return {
        "jobs": len(order),
        "call_to_submit": received - t_call,
        "submit_to_first_claim": order[0].first["Matched"] - received,
        "first_claim_to_last_done": order[-1].first["Done"] - order[0].first["Matched"],
        "last_done_to_return": t_return - order[-1].first["Done"],
        "hop_median_ms": statistics.median(hops) * 1000,
        "hop_p90_ms": pct(hops, 0.9) * 1000,
        "done_to_next_matched_median_ms": statistics.median(released) * 1000,
        "matched_to_running_median_ms": statistics.median(matched) * 1000,
        "running_to_done_median_ms": statistics.median(runs) * 1000,
    }


# --------------------------------------------------------------------------- engine


def engine_doc(data_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((data_dir / "engine.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def post_submission_alone(
    doc: dict[str, Any], body: bytes, repeats: int
) -> tuple[list[float], int]:
    """Time POST /api/pipelines alone with a body serialized beforehand (server + HTTP)."""
    import httpx

    from diracx.core.version import __version__

    headers = {
        "Authorization": f"Bearer {doc['token']}",
        "DiracX-Client-Version": __version__,
        "Content-Type": "application/json",
    }
    times = []
    status = 0
    with httpx.Client(base_url=doc["url"], headers=headers, timeout=120) as http:
        http.get("/api/health/live")  # open the connection first
        for _ in range(repeats):
            t = time.perf_counter()
            response = http.post("/api/pipelines", content=body)
            times.append(time.perf_counter() - t)
            status = response.status_code
    return times, status


def http_round_trips(doc: dict[str, Any], repeats: int) -> list[float]:
    """Latency of the smallest request on an open connection: the floor of every API call."""
    import httpx

    times = []
    with httpx.Client(base_url=doc["url"], timeout=30) as http:
        http.get("/api/health/live")
        for _ in range(repeats):
            t = time.perf_counter()
            http.get("/api/health/live")
            times.append(time.perf_counter() - t)
    return times


# --------------------------------------------------------------------------- profiling


class Profiler:
    """The --profile machinery: probe files and py-spy runs, grouped by phase."""

    def __init__(self, data_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.probe_dir = data_dir.parent / (data_dir.name + "-probe")
        self.spy_dir = data_dir.parent / (data_dir.name + "-pyspy")
        self.phases: dict[str, tuple[float, float]] = {}
        self.spy_files: dict[str, Path] = {}
        self.pyspy = find_pyspy() if enabled else None
        self.rate = 200

    def install(self) -> None:
        """Probe this process, and (through PYTHONPATH) the engine and worker it starts."""
        if not self.enabled:
            return
        os.environ[PROBE_ENV] = str(self.probe_dir)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(PROBE_DIR), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        # this process: load the probe under its own name (it installs itself from the env)
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "diracx_bench_probe", PROBE_DIR / "sitecustomize.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        spy = None
        if self.enabled and self.pyspy:
            self.spy_dir.mkdir(exist_ok=True)
            out = self.spy_dir / f"{name}.txt"
            spy = subprocess.Popen(
                [
                    *self.pyspy,
                    "record",
                    "--pid",
                    str(os.getpid()),
                    "--subprocesses",
                    "--nonblocking",
                    "--gil",
                    "--format",
                    "raw",
                    "--rate",
                    str(self.rate),
                    "--output",
                    str(out),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(0.5)  # let it attach
            self.spy_files[name] = out
        t0 = time.time()
        try:
            yield
        finally:
            self.phases[name] = (t0, time.time())
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                try:
                    spy.wait(30)
                except subprocess.TimeoutExpired:
                    spy.kill()
                    spy.wait()

    def records(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.probe_dir.glob("*.jsonl")):
            pid = int(path.stem)
            for row in path.read_text().splitlines():
                try:
                    rec = json.loads(row)
                except ValueError:
                    continue
                rec["pid"] = pid
                out.append(rec)
        return out

    def cleanup(self) -> None:
        shutil.rmtree(self.probe_dir, ignore_errors=True)
        shutil.rmtree(self.spy_dir, ignore_errors=True)


def find_pyspy() -> list[str] | None:
    candidates = [shutil.which("py-spy"), str(Path(sys.executable).parent / "py-spy")]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return [c]
    return None


def role_of(pid: int, roles: dict[int, str]) -> str:
    return roles.get(pid, f"pid {pid}")


def print_probe_phase(
    records: list[dict[str, Any]],
    roles: dict[int, str],
    window: tuple[float, float],
    per: int,
    per_label: str,
) -> None:
    """Calls, total and mean wall time per probed function inside *window*."""
    t0, t1 = window
    agg: dict[tuple[str, str], list[float]] = defaultdict(list)
    batch: dict[tuple[str, str], list[int]] = defaultdict(list)
    for r in records:
        if r["f"].startswith("probe:") or not (t0 <= r["t0"] <= t1):
            continue
        key = (role_of(r["pid"], roles), r["f"])
        agg[key].append(r["dt"])
        if r.get("n") is not None:
            batch[key].append(r["n"])
    if not agg:
        print("    (no probe records in this phase)")
        return
    print(
        f"    {'process':<8} {'function (inclusive wall time)':<40} {'calls':>6} "
        f"{'total':>10} {'mean':>10} {per_label:>10} {'batch':>6}"
    )
    order = {"client": 0, "server": 1, "worker": 2}
    for (role, fn), dts in sorted(
        agg.items(), key=lambda kv: (order.get(kv[0][0], 9), -sum(kv[1]))
    ):
        total = sum(dts)
        n = batch.get((role, fn))
        print(
            f"    {role:<8} {fn:<40} {len(dts):>6} {total * 1000:>8.1f}ms "
            f"{statistics.fmean(dts) * 1000:>8.2f}ms {total / per * 1000:>8.3f}ms "
            f"{statistics.fmean(n) if n else float('nan'):>6.1f}"
        )


TIMELINE = [  # (segment, from (function, edge), to (function, edge)) per job, in the worker
    ("claim transaction (claim+start)", ("PipelineDB.claim", 0), ("PipelineDB.claim", 1)),
    ("claimed -> _build runs", ("PipelineDB.claim", 1), ("WorkerRuntime._build", 0)),
    (
        "_build -> _prepare (slot, thread pool)",
        ("WorkerRuntime._build", 0),
        ("WorkerRuntime._prepare", 0),
    ),
    (
        "_prepare (scratch dirs, inputs)",
        ("WorkerRuntime._prepare", 0),
        ("WorkerRuntime._prepare", 1),
    ),
    ("-> executor (back on the loop)", ("WorkerRuntime._prepare", 1), ("ProcessExecutor.build", 0)),
    ("executor (spawn `true`, wait)", ("ProcessExecutor.build", 0), ("ProcessExecutor.build", 1)),
    ("-> _ingest (thread pool)", ("ProcessExecutor.build", 1), ("WorkerRuntime._ingest", 0)),
    (
        "_ingest: log, outputs",
        ("WorkerRuntime._ingest", 0),
        ("WorkerRuntime._store_results", 1),
    ),
    ("_ingest: remove_scratch", ("remove_scratch", 0), ("remove_scratch", 1)),
    ("-> _build returns", ("WorkerRuntime._ingest", 1), ("WorkerRuntime._build", 1)),
    ("waiting for the commit loop", ("WorkerRuntime._build", 1), ("PipelineDB.finish", 0)),
    ("finish transaction", ("PipelineDB.finish", 0), ("PipelineDB.finish", 1)),
]


def print_job_timeline(
    records: list[dict[str, Any]], roles: dict[int, str], window: tuple[float, float]
) -> None:
    """Each job's way through the worker, segment by segment (probe records with job ids)."""
    t0, t1 = window
    spans: dict[int, dict[str, tuple[float, float]]] = defaultdict(dict)
    for r in records:
        if role_of(r["pid"], roles) != "worker" or not (t0 <= r["t0"] <= t1) or "job" not in r:
            continue
        jobs = r["job"] if isinstance(r["job"], list) else [r["job"]]
        for j in jobs:
            spans[j].setdefault(r["f"], (r["t0"], r["t0"] + r["dt"]))
    if not spans:
        print("    (no per-job probe records)")
        return
    print(f"    each job's way through the worker ({len(spans)} jobs; claim and finish are")
    print("    transactions shared by the jobs of a batch; '->' segments are waits between steps)")
    print(f"    {'segment':<42} {'median':>9} {'mean':>9} {'p90':>9}  jobs")
    total_mean = 0.0
    for label, (fa, ea), (fb, eb) in TIMELINE:
        values = [sp[fb][eb] - sp[fa][ea] for sp in spans.values() if fa in sp and fb in sp]
        if not values:
            continue
        mean = statistics.fmean(values)
        total_mean += mean
        print(
            f"    {label:<42} {statistics.median(values) * 1000:7.2f}ms {mean * 1000:7.2f}ms "
            f"{pct(values, 0.9) * 1000:7.2f}ms  {len(values)}"
        )
    whole = [
        sp["PipelineDB.finish"][1] - sp["PipelineDB.claim"][0]
        for sp in spans.values()
        if "PipelineDB.claim" in sp and "PipelineDB.finish" in sp
    ]
    if whole:
        print(
            f"    {'claim start -> finish end, whole':<42} "
            f"{statistics.median(whole) * 1000:7.2f}ms {statistics.fmean(whole) * 1000:7.2f}ms "
            f"{pct(whole, 0.9) * 1000:7.2f}ms  {len(whole)}"
        )


GENERIC = {
    "_wrap.<locals>.sync_timed",
    "_wrap.<locals>.async_timed",
    "Thread._bootstrap",
    "Thread._bootstrap_inner",
    "Thread.run",
    "_WorkItem.run",
    "BaseEventLoop.run_forever",
    "BaseEventLoop._run_once",
    "BaseEventLoop.run_until_complete",
    "Handle._run",
    "Runner.run",
    "<module>",
    "_run_module_as_main",
    "_run_code",
    "run",
    "_bootstrap",
    "_bootstrap_inner",
    "run_forever",
    "_run_once",
    "_run",
    "main",
    "worker",
    "start",
    "run_until_complete",
}
FRAME_RE = re.compile(r"^(?P<fn>.*?) \((?P<file>[^():]*)(?::\d+)?\)$")


def short_file(path: str) -> str:
    for marker in ("site-packages/", "/src/", "/lib/python3.11/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path.rsplit("/", 2)[-1]


def package_of(path: str) -> str:
    rel = short_file(path)
    parts = rel.split("/")
    if rel.startswith("diracx/") and len(parts) > 2:
        return "diracx." + parts[1]
    if len(parts) > 1:
        return parts[0]
    return parts[0].removesuffix(".py") or path


def parse_pyspy(path: Path) -> dict[int, list[tuple[list[tuple[str, str]], int]]]:
    """Collapsed stacks by process id: [(frames [(function, file)], samples)]."""
    by_pid: dict[int, list[tuple[list[tuple[str, str]], int]]] = defaultdict(list)
    if not path.exists():
        return by_pid
    for row in path.read_text(errors="replace").splitlines():
        stack, _, count = row.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        pid = None
        frames = []
        for frame in stack.split(";"):
            if frame.startswith("process "):
                m = re.match(r"process (\d+):", frame)
                if m:
                    pid = int(m.group(1))
                continue
            m = FRAME_RE.match(frame)
            frames.append((m.group("fn"), m.group("file")) if m else (frame, ""))
        if pid is not None and frames:
            by_pid[pid].append((frames, int(count)))
    return by_pid


def print_pyspy(path: Path, roles: dict[int, str], rate: int, wall: float, top: int = 14) -> None:
    stacks = parse_pyspy(path)
    if not stacks:
        print("    (no py-spy samples)")
        return
    for pid, rows in sorted(stacks.items(), key=lambda kv: -sum(c for _, c in kv[1])):
        role = role_of(pid, roles)
        if role.startswith("pid "):
            continue  # a build's process (`true`) or py-spy's own
        total = sum(c for _, c in rows)
        cpu = total / rate
        print(
            f"    {role}: {total} samples = {cpu:.2f} s holding the GIL "
            f"in {wall:.2f} s wall ({cpu / wall * 100:.0f}% GIL utilization)"
        )
        inclusive: Counter[str] = Counter()
        own: Counter[str] = Counter()
        packages: Counter[str] = Counter()
        for frames, count in rows:
            seen = set()
            for fn, file in frames:
                key = f"{fn} ({short_file(file)})"
                if fn in GENERIC or key in seen:
                    continue
                seen.add(key)
                inclusive[key] += count
            fn, file = frames[-1]
            own[f"{fn} ({short_file(file)})"] += count
            packages[package_of(file)] += count
        print(
            "      self time by package: "
            + ", ".join(f"{p} {c / total * 100:.0f}%" for p, c in packages.most_common(9))
        )
        print("      top inclusive:")
        for key, c in inclusive.most_common(top):
            print(f"        {c / total * 100:5.1f}%  {c / rate * 1000:8.0f} ms  {key}")
        print("      top self:")
        for key, c in own.most_common(8):
            print(f"        {c / total * 100:5.1f}%  {c / rate * 1000:8.0f} ms  {key}")


def import_times(modules: list[str], top: int = 8) -> list[tuple[str, float]]:
    """The heaviest imports (cumulative, seconds) of a fresh interpreter importing *modules*."""
    env = {k: v for k, v in os.environ.items() if k not in (PROBE_ENV,)}
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "; ".join(f"import {m}" for m in modules)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    rows = []
    for row in proc.stderr.splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", row)
        if m and len(m.group(3)) <= 2:  # top-level imports only
            rows.append((m.group(4), int(m.group(2)) / 1e6))
    rows.sort(key=lambda r: -r[1])
    return rows[:top]


def interpreter_start() -> float:
    times = []
    for _ in range(5):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - t)
    return min(times)


# --------------------------------------------------------------------------- ceilings


def ceilings(N: int, scratch_parent: Path) -> None:
    """Two parts of the engine alone, in this process, with none of the others:

    - the worker's build path: ``WorkerRuntime._build`` (scratch directory, inputs,
      ``true`` through the process executor, ingest, scratch removal) for N jobs,
      ``worker_slots`` at a time, no database, broker or HTTP;
    - the database's state changes: ``PipelineDB.submit`` of N jobs, then claim
      (with start) and finish in batches like the worker's, on a fresh SQLite file.

    Both use private parts of the code: a failure is reported, not raised.
    """
    import asyncio

    from diracx.api import instantiate
    from diracx.core.settings import ServiceSettings

    root = Path(tempfile.mkdtemp(prefix="ceiling-", dir=scratch_parent))
    settings = ServiceSettings(data_dir=root)
    inst = instantiate(noop_stages("ceiling", N))
    from diracx.core.derivation import plan_order

    ordered = plan_order(inst.submission)

    heading(f"ceilings: parts of the engine alone, in one process ({N} no-op jobs)")
    try:
        from diracx.db.migrate import upgrade
        from diracx.db.pipelines import BuildSuccess, PipelineDB
        from diracx.tasks.runtime import WorkerRuntime

        upgrade(settings.resolved_db_url())

        async def db_part() -> dict[str, float]:
            db = PipelineDB.from_url(settings.resolved_db_url())
            try:
                t = time.perf_counter()
                outcome = await db.submit("bench", ordered, inst.submission.targets)
                t_submit = time.perf_counter() - t
                ids = list(outcome.ready)
                t = time.perf_counter()
                claimed = []
                for i in range(0, len(ids), 16):
                    claimed += await db.claim(ids[i : i + 16], "bench-worker", start=True)
                t_claim = time.perf_counter() - t
                now = datetime.now(UTC)
                successes = [
                    BuildSuccess(
                        job_id=c.id,
                        dref=c.dref,
                        output="0" * 64,
                        context={},
                        rref=f"{c.id:064x}",
                        log=None,
                        started=now,
                        finished=now,
                    )
                    for c in claimed
                ]
                t = time.perf_counter()
                for i in range(0, len(successes), 6):
                    await db.finish("bench-worker", successes[i : i + 6], [])
                t_finish = time.perf_counter() - t
                return {"submit": t_submit, "claim": t_claim, "finish": t_finish}
            finally:
                await db.close()

        d = asyncio.run(db_part())
        total = d["claim"] + d["finish"]
        line("database: submit N jobs (one transaction)", secs(d["submit"]))
        line("database: claim+start, 16 per transaction", ms(d["claim"] / N), "per job")
        line("database: finish, 6 per transaction", ms(d["finish"] / N), "per job")
        line(
            "database: claim + finish",
            f"{N / total:.0f} jobs/s",
            f"{total / N * 1000:.2f} ms per job; the worker's DB work with nothing else running",
        )
    except Exception as exc:  # private API: report and go on
        line("database part", "failed", f"{type(exc).__name__}: {exc}")

    try:
        from diracx.db.pipelines import ClaimedJob
        from diracx.tasks.runtime import WorkerRuntime

        async def build_part() -> tuple[float, int]:
            runtime = WorkerRuntime(settings, enqueue=lambda ids: None, worker_id="ceiling")
            runtime.scratch_root.mkdir(parents=True, exist_ok=True)
            jobs = [ClaimedJob(i, dref, drv, 1, {}) for i, (dref, drv) in enumerate(ordered)]
            t = time.perf_counter()
            outcomes = await asyncio.gather(*(runtime._build(j) for j in jobs))
            wall = time.perf_counter() - t
            await runtime.db.close()
            ok = sum(1 for o in outcomes if type(o).__name__ == "BuildSuccess")
            return wall, ok

        before = os.times()
        wall, ok = asyncio.run(build_part())
        after = os.times()
        cpu = (after.user - before.user) + (after.system - before.system)
        kids = (after.children_user - before.children_user) + (
            after.children_system - before.children_system
        )
        line(
            f"build path: WorkerRuntime._build, {settings.worker_slots} at a time",
            f"{N / wall:.0f} jobs/s",
            f"{wall / N * 1000:.2f} ms per job, {ok}/{N} built; CPU {cpu / N * 1000:.2f} ms/job "
            f"({(after.system - before.system) / N * 1000:.2f} sys) "
            f"+ `true` {kids / N * 1000:.2f}",
        )
    except Exception as exc:
        line("build path", "failed", f"{type(exc).__name__}: {exc}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- the benchmark


def noop_stages(prefix: str, count: int, chained: bool = False) -> list[Any]:
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


def timed_run(session: Any, targets: Any) -> tuple[Any, Any, float, float, float]:
    t_call = time.time()
    t = time.perf_counter()
    inst, result = session.run(targets)
    wall = time.perf_counter() - t
    t_return = time.time()
    if not result.ok:
        raise SystemExit(f"the pipeline failed: {result.summary()}")
    return inst, result, wall, t_call, t_return


def run(args: argparse.Namespace, data_dir: Path, prof: Profiler, results: dict[str, Any]) -> None:
    N, M = args.wide, args.chain

    print(f"DiracX embedded engine benchmark: {N} wide, {M} chained no-op command stages")
    print(
        f"machine: {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; load average at start "
        f"{os.getloadavg()[0]:.2f} (other processes may be running)"
    )
    print(f"data dir: {data_dir} (temporary, removed at the end)")
    if prof.enabled:
        print(
            "--profile: probes on"
            + (", py-spy sampling on" if prof.pyspy else ", py-spy not found (no sampling)")
            + "; timings below are slightly inflated by the profiling"
        )

    heading("reference")
    spawn = spawn_true(50 if args.quick else 300)
    results["spawn_true_ms"] = spawn["mean"] * 1000
    line("spawn `true` (subprocess.run), mean", ms(spawn["mean"]), f"median {ms(spawn['median'])}")

    heading("engine start")
    t = time.perf_counter()
    import diracx.api  # noqa: F401

    results["client_import_s"] = time.perf_counter() - t
    from diracx.api import connect

    line("import diracx.api (client)", secs(results["client_import_s"]))
    with prof.phase("cold_start"):
        t = time.perf_counter()
        session = connect()
        cold = time.perf_counter() - t
    results["cold_start_s"] = cold
    doc = engine_doc(data_dir)
    if doc is None:
        raise SystemExit("no engine.json after connect(): is DIRACX_URL set?")
    engine_pid = int(doc["pid"])
    line("cold start: first connect() until it answers", secs(cold), verdict("cold_start_s", cold))
    try:
        with prof.phase("first_stage"):
            _, _, first, _, _ = timed_run(session, noop_stages("warm-up", 1)[0])
        results["first_stage_after_cold_start_s"] = first
        line("then the first 1-stage pipeline", secs(first), "(includes the worker's start)")
        reuse = []
        for _ in range(3 if args.quick else 5):
            t = time.perf_counter()
            connect().close()
            reuse.append(time.perf_counter() - t)
        results["reuse_s"] = statistics.median(reuse)
        line(
            "reuse: another connect() while it is up",
            ms(statistics.median(reuse)),
            f"median of {len(reuse)}; min {ms(min(reuse))}",
        )

        rtt = http_round_trips(doc, 20)
        results["http_round_trip_ms"] = statistics.median(rtt) * 1000
        line(
            "one small HTTP request (GET /api/health/live)",
            ms(statistics.median(rtt)),
            f"median of {len(rtt)}, keep-alive connection",
        )

        wpid = worker_pid(engine_pid)
        roles = {os.getpid(): "client", engine_pid: "server"}
        if wpid:
            roles[wpid] = "worker"
        time.sleep(1.0)
        idle = (rss_kib(engine_pid), rss_kib(wpid) if wpid else None)

        # -- wide
        heading(f"wide: {N} independent no-op stages, one pipeline")
        t = time.perf_counter()
        wide = noop_stages("wide", N)
        make = time.perf_counter() - t
        pids = {"client": os.getpid(), "server": engine_pid, "worker": wpid}

        def check_worker(phase: str) -> None:
            """Warn when the engine had to restart its worker (the figures are then off)."""
            nonlocal wpid
            now = worker_pid(engine_pid)
            if now != wpid:
                print(
                    f"  WARNING: the worker process changed during the {phase} run "
                    f"({wpid} -> {now}): it died and the engine restarted it; "
                    "this phase's figures are not representative"
                )
                results.setdefault("worker_restarts", []).append(phase)
                wpid = now
                pids["worker"] = now
                if now:
                    roles[now] = "worker"

        with prof.phase("wide"), MemorySampler(engine_pid, wpid) as sampler, CpuMeter(pids) as cpu:
            _, result, wall, t_call, t_return = timed_run(session, wide)
        built = len(result.built())
        results.update(
            wide_s=wall,
            wide_stages_per_s=N / wall,
            wide_overhead_ms=wall / N * 1000,
            wide_built=built,
        )
        line("make the stages (client DSL, not timed below)", ms(make))
        line("realize, end to end (session.run)", secs(wall), f"{built} built")
        line("stages per second", f"{N / wall:.0f} /s", verdict("wide_stages_per_s", N / wall))
        line("overhead per stage (wall / N)", ms(wall / N))
        results["wide_cpu"] = cpu.report(N, "per stage")
        check_worker("wide")
        wide_db = db_breakdown_wide(data_dir, result.pipeline.id, t_call, t_return)
        results["wide_db"] = wide_db
        time.sleep(1.0)
        after = (rss_kib(engine_pid), rss_kib(wpid) if wpid else None)

        # -- chain
        heading(f"chained: {M} no-op stages, each the input of the next")
        chain = noop_stages("chain", M, chained=True)
        with prof.phase("chain"), CpuMeter(pids) as cpu:
            _, cres, cwall, c_call, c_return = timed_run(session, chain[-1])
        results.update(chain_s=cwall, chain_ms_per_hop=cwall / M * 1000)
        line("realize, end to end (session.run)", secs(cwall), f"{len(cres.built())} built")
        line(
            "per-hop latency (wall / M)",
            ms(cwall / M),
            verdict("chain_ms_per_hop", cwall / M * 1000),
        )
        results["chain_cpu"] = cpu.report(M, "per hop")
        check_worker("chained")
        chain_db = db_breakdown_chain(data_dir, cres.pipeline.id, c_call, c_return)
        results["chain_db"] = chain_db

        # -- cached
        heading(f"fully cached re-run of the {N} wide stages (new Stage objects, as a new run)")
        reruns = []
        instantiate_s = []
        from diracx.api import instantiate

        with prof.phase("cached"):
            with CpuMeter(pids) as cpu:
                for _ in range(3):
                    fresh = noop_stages("wide", N)
                    _, rres, rwall, _, _ = timed_run(session, fresh)
                    if len(rres.cached()) != N:
                        raise SystemExit(f"the re-run was not fully cached: {rres.summary()}")
                    reruns.append(rwall)
            for _ in range(3):
                fresh = noop_stages("wide", N)
                t = time.perf_counter()
                rinst = instantiate(fresh)
                instantiate_s.append(time.perf_counter() - t)
            body = rinst.submission.model_dump_json().encode()
            t = time.perf_counter()
            rinst.submission.model_dump(mode="json")
            dump_s = time.perf_counter() - t
            post, status = post_submission_alone(doc, body, 3)
        results.update(
            cached_rerun_s=reruns[0],
            cached_rerun_median_s=statistics.median(reruns),
            cached_instantiate_s=statistics.median(instantiate_s),
            cached_post_s=statistics.median(post),
        )
        line("end to end, first re-run", secs(reruns[0]), verdict("cached_rerun_s", reruns[0]))
        line("end to end, median of 3", secs(statistics.median(reruns)))
        results["cached_cpu"] = cpu.report(3, "per re-run")
        check_worker("cached")
        line("  client: instantiate (DRefs, graph check)", secs(statistics.median(instantiate_s)))
        line("  client: submission.model_dump (for the request)", secs(dump_s))
        line(
            "  POST /api/pipelines alone (server + HTTP)",
            secs(statistics.median(post)),
            f"HTTP {status}, {len(body) / 1024:.0f} KiB body, median of 3",
        )

        # -- memory
        heading("memory (RSS of the engine's processes)")
        line("server, idle (after the first stage)", mib(idle[0]))
        line("worker, idle", mib(idle[1]))
        line("server + worker, idle", mib((idle[0] or 0) + (idle[1] or 0)))
        line(
            "server, max during the wide run", mib(sampler.max_server), f"{sampler.samples} samples"
        )
        line("worker, max during the wide run", mib(sampler.max_worker))
        line("server + worker, max during the wide run", mib(sampler.max_total))
        line("server + worker, idle after the wide run", mib((after[0] or 0) + (after[1] or 0)))
        results["rss_mib"] = {
            "server_idle": (idle[0] or 0) / 1024,
            "worker_idle": (idle[1] or 0) / 1024,
            "server_max_load": sampler.max_server / 1024,
            "worker_max_load": sampler.max_worker / 1024,
            "total_max_load": sampler.max_total / 1024,
            "total_idle_after": ((after[0] or 0) + (after[1] or 0)) / 1024,
        }

        # -- from the database
        heading("where the time goes, from the jobs' status history (diracx.db)")
        print("  (each transaction stamps all its jobs with one time, taken when it begins)")
        w = wide_db
        print(f"  wide ({w['jobs']} jobs):")
        line(
            "  run() called -> submit transaction",
            ms(w["call_to_submit"]),
            "client instantiate + HTTP + server checks",
        )
        line("  submit -> first claim (broker delivery)", ms(w["submit_to_first_claim"]))
        line(
            "  first claim -> last Done",
            secs(w["first_claim_to_last_done"]),
            f"{w['done_per_s_while_building']:.0f} jobs/s while building",
        )
        line(
            "  last Done -> run() returns", ms(w["last_done_to_return"]), "long poll + get_pipeline"
        )
        line(
            "  claim transactions (jobs per claim)",
            f"{w['claim_transactions']} ({w['jobs_per_claim']:.1f})",
        )
        line("  start transactions", f"{w['start_transactions']}")
        line(
            "  finish transactions (jobs per finish)",
            f"{w['finish_transactions']} ({w['jobs_per_finish']:.1f})",
            f"one every {w['ms_between_finishes']:.1f} ms",
        )
        line(
            "  Matched -> Done per job, median",
            f"{w['matched_to_done_median_ms']:.1f} ms",
            "incl. waiting for a build slot",
        )
        c = chain_db
        print(f"  chain ({c['jobs']} jobs):")
        line("  run() called -> submit transaction", ms(c["call_to_submit"]))
        line("  submit -> first claim (broker delivery)", ms(c["submit_to_first_claim"]))
        line(
            "  hop Done(i) -> Done(i+1), median / p90",
            f"{c['hop_median_ms']:.2f} ms",
            f"p90 {c['hop_p90_ms']:.2f} ms",
        )
        line(
            "  Done(i) -> Matched(i+1), median",
            f"{c['done_to_next_matched_median_ms']:.2f} ms",
            "the finish transaction, up to the claim of the dependent",
        )
        line("  Matched -> Running, median", f"{c['matched_to_running_median_ms']:.2f} ms")
        line(
            "  Running -> Done, median",
            f"{c['running_to_done_median_ms']:.2f} ms",
            "slot, prepare, spawn, ingest, then the finish transaction's start",
        )
        line("  last Done -> run() returns", ms(c["last_done_to_return"]))

        if prof.enabled:
            profile_report(args, prof, roles, results, data_dir)
            ceilings(N, data_dir.parent)
    finally:
        try:
            session.close()
        except Exception as exc:  # the engine may be gone already
            print(f"(closing the session: {exc})", file=sys.stderr)
        stopped = stop_process(engine_pid)
        results["engine_stopped_cleanly"] = stopped
        print(f"\nengine {engine_pid} stopped ({'SIGTERM' if stopped else 'SIGKILL needed'})")


def profile_report(
    args: argparse.Namespace,
    prof: Profiler,
    roles: dict[int, str],
    results: dict[str, Any],
    data_dir: Path,
) -> None:
    N, M = args.wide, args.chain
    records = prof.records()
    for r in records:  # the worker may have been restarted: name processes by their argv
        if r["f"] == "probe:start" and r["pid"] not in roles:
            argv = " ".join(r.get("argv", []))
            if "diracx.tasks" in argv:
                roles[r["pid"]] = "worker"
            elif "diracx.routers" in argv:
                roles[r["pid"]] = "server"
    missing = {n for r in records if r["f"] == "probe:missing" for n in r.get("names", [])}
    heading("=" * 100)
    print("PROFILE (--profile): wall-clock probes per function; 'per stage' = total / stages")
    if missing:
        print(f"  (probe targets not found in this version of the code: {sorted(missing)})")

    # cold start timeline
    heading("cold start timeline (seconds after connect() was called), then the first stage")
    t0, t1 = prof.phases["cold_start"]
    t_end = prof.phases.get("first_stage", (t1, t1))[1]
    events = [r for r in records if t0 - 0.01 <= r["t0"] <= t_end and r["f"] != "probe:missing"]
    events.append({"f": "== connect() returned ==", "t0": t1, "dt": 0.0, "pid": os.getpid()})
    if "first_stage" in prof.phases:
        events.append(
            {
                "f": "== first pipeline submitted (run() called) ==",
                "t0": prof.phases["first_stage"][0],
                "dt": 0.0,
                "pid": os.getpid(),
            }
        )
        events.append(
            {"f": "== first pipeline returned ==", "t0": t_end, "dt": 0.0, "pid": os.getpid()}
        )
    polls = 0
    for r in sorted(events, key=lambda r: r["t0"]):
        role = role_of(r["pid"], roles)
        if r["f"] == "running_engine":
            polls += 1
            if polls > 1:
                continue
        name = "interpreter up (sitecustomize ran)" if r["f"] == "probe:start" else r["f"]
        print(f"  {r['t0'] - t0:7.3f}  {r['dt'] * 1000:8.1f} ms  {role:<8} {name}")
    print(f"  (the client polled running_engine {polls} times while the engine started)")
    print(f"  python -c pass on this machine: {interpreter_start() * 1000:.0f} ms")
    for label, mods in (
        ("engine (server) imports", ["diracx.routers.engine", "diracx.routers.factory"]),
        ("worker imports", ["diracx.tasks.celery_app", "celery.worker"]),
        ("client imports", ["diracx.api"]),
    ):
        heavy = import_times(mods)
        print(f"  heaviest {label}: " + ", ".join(f"{m} {s * 1000:.0f} ms" for m, s in heavy))

    for name, per, label in (
        ("first_stage", 1, "per stage"),
        ("wide", N, "per stage"),
        ("chain", M, "per hop"),
        ("cached", 3 * N, "per stage"),
    ):
        if name not in prof.phases:
            continue
        t0, t1 = prof.phases[name]
        heading(
            f"phase {name}: {t1 - t0:.2f} s wall"
            + (" (3 cached re-runs, 3 instantiates, 3 POSTs)" if name == "cached" else "")
        )
        print_probe_phase(records, roles, (t0, t1), per, label)
        if name in ("wide", "chain"):
            print_job_timeline(records, roles, (t0, t1))
        if name in prof.spy_files:
            print(
                "   py-spy --gil (samples of the thread holding the GIL: the Python work;"
                " syscalls that release the GIL are not in it):"
            )
            print_pyspy(prof.spy_files[name], roles, prof.rate, t1 - t0)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wide", type=int, default=None, help="wide stages (default 1000)")
    parser.add_argument("--chain", type=int, default=None, help="chained stages (default 200)")
    parser.add_argument("--quick", action="store_true", help="100 wide and 20 chained")
    parser.add_argument("--profile", action="store_true", help="also show where the time goes")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    args = parser.parse_args(argv)
    args.wide = args.wide or (100 if args.quick else 1000)
    args.chain = args.chain or (20 if args.quick else 200)
    if args.wide < 1 or args.chain < 2:
        parser.error("--wide must be at least 1 and --chain at least 2")

    # A fresh engine of our own: never the user's engine or service. Its directory sits
    # beside the user's real data directory, on the same filesystem (on some machines
    # /tmp creates files several times slower, which would skew every figure).
    parent = default_data_dir().parent
    parent.mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="diracx-bench-", dir=parent))
    for var in (
        "DIRACX_URL",
        "DIRACX_TOKEN",
        "DIRACX_DB_URL",
        "DIRACX_BROKER_URL",
        "DIRACX_STORE_PATH",
    ):
        os.environ.pop(var, None)
    os.environ["DIRACX_DATA_DIR"] = str(data_dir)
    # if this program dies without stopping it, the engine stops itself soon
    os.environ.setdefault("DIRACX_ENGINE_IDLE_TIMEOUT", "120")
    prof = Profiler(data_dir, args.profile)
    prof.install()
    results: dict[str, Any] = {"wide": args.wide, "chain": args.chain}
    try:
        run(args, data_dir, prof, results)
    finally:
        doc = engine_doc(data_dir)  # normally gone: the engine removes it when it stops
        if doc is not None and alive(int(doc["pid"])):
            stop_process(int(doc["pid"]))
        if args.keep:
            print(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
        prof.cleanup()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
