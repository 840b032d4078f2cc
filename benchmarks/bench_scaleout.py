"""Benchmark DiracX scaled out against raw Celery, on the same Redis, in the same run.

    uv run --no-sync python benchmarks/bench_scaleout.py             # 1000 wide, 200 chained
    uv run --no-sync python benchmarks/bench_scaleout.py --quick     # 100 wide, 20 chained
    uv run --no-sync python benchmarks/bench_scaleout.py --profile   # + where the time goes
    uv run --no-sync python benchmarks/bench_scaleout.py --json figures.json

DiracX: PostgreSQL, Redis (the Celery broker), an API server (``python -m
diracx.routers serve``), the scheduler and two workers (``python -m diracx.tasks
worker``, each ``--slots S``), every one a process of its own on loopback, started
with ``diracx.testing.distributed.start_distributed`` in a temporary directory and
stopped at the end. The store is a directory the processes share (``--s3``: a
bucket on moto's S3 server instead). A pipeline of N independent no-op command
stages (``true``), then a chain of M, through the Python API, end to end; every
job, status change and realization is persisted.

Raw Celery: two ``celery worker`` processes (thread pool, concurrency S, like the
workers' slots) on another database of the same Redis server, with a Redis result
backend (how a Celery program learns that its tasks are done): ``group`` of N
tasks and ``chain`` of M, once with an empty task and once with a task that runs
``true`` like a DiracX stage does. It persists nothing but the results.

See benchmarks/README.md for what the figures mean.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from diracx.testing.distributed import DistributedService, ManagedProcess, start_distributed
from diracx.testing.engine import descendants_of
from diracx.testing.postgresql import start_postgresql
from diracx.testing.redis import start_redis

HERE = Path(__file__).resolve().parent
PROBE_DIR = HERE / "probe"
PROBE_ENV = "DIRACX_BENCH_PROBE"
SLOTS = 8  # builds (DiracX) or tasks (Celery) at once per worker process
WORKERS = 2
RAW_QUEUE = "rawbench"
CLK_TCK = os.sysconf("SC_CLK_TCK")

RAW_APP = '''
"""The raw Celery side of bench_scaleout.py: two tasks, nothing persisted."""
import os
import subprocess

from celery import Celery

app = Celery("rawbench", broker=os.environ["RAW_BROKER"], backend=os.environ["RAW_BACKEND"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    task_default_queue="rawbench",
)


@app.task(name="rawbench.noop")
def noop():
    return None


@app.task(name="rawbench.spawn")
def spawn():
    subprocess.run(["true"], check=True)
'''


# --------------------------------------------------------------------------- output


def line(label: str, value: str, note: str = "") -> None:
    print(f"  {label:<48} {value:>14}  {note}".rstrip())


def heading(text: str) -> None:
    print(f"\n{text}")


# --------------------------------------------------------------------------- CPU accounting


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User+system CPU of *pid* (with *children*: plus its reaped children's)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks / CLK_TCK


class CpuMeter:
    """CPU seconds of named groups of processes between start() and stop()."""

    def __init__(self, groups: Mapping[str, Sequence[int]]) -> None:
        self.groups = groups
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _sample(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, roots in self.groups.items():
            total = 0.0
            for root in roots:
                # a root and its live descendants (PostgreSQL's backends), with what the
                # root reaped (the builds a worker ran)
                total += cpu_seconds(root, children=True)
                total += sum(cpu_seconds(p) for p in descendants_of(root))
            out[name] = total
        t = os.times()
        out["client (this process)"] = t.user + t.system
        return out

    def start(self) -> None:
        self.before = self._sample()

    def stop(self) -> None:
        after = self._sample()
        self.used = {k: after[k] - self.before.get(k, 0.0) for k in after}


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ", 3)[:3].__str__()
    except OSError:
        return "n/a"


# --------------------------------------------------------------------------- DiracX side


def diracx_figures(
    service: DistributedService, wide: int, chain: int, meters: dict[str, CpuMeter]
) -> dict[str, Any]:
    from diracx.api import command, connect

    salt = uuid.uuid4().hex
    figures: dict[str, Any] = {}
    with connect() as s:
        # warm up: the API server and both workers have imported what they need
        warm = [command(f"warm-{i}", ["true"], config={"salt": salt}) for i in range(2 * SLOTS)]
        _, result = s.run(warm)
        assert result.ok, result.failures

        stages = [command(f"wide-{i}", ["true"], config={"salt": salt}) for i in range(wide)]
        meters["diracx wide"].start()
        t0, epoch = time.perf_counter(), time.time()
        _, result = s.run(stages)
        wall = time.perf_counter() - t0
        meters["diracx wide"].stop()
        figures["wide_window"] = (epoch, time.time())
        assert result.ok and len(result.built()) == wide, result.failures
        figures["wide_s"] = wall
        figures["wide_stages_per_s"] = wide / wall
        figures["wide_pipeline"] = result.pipeline.id

        prev = command("chain-0", ["true"], config={"salt": salt})
        for i in range(1, chain):
            prev = command(f"chain-{i}", ["true"], inputs={"prev": prev}, config={"salt": salt})
        meters["diracx chain"].start()
        t0, epoch = time.perf_counter(), time.time()
        _, result = s.run(prev)
        wall = time.perf_counter() - t0
        meters["diracx chain"].stop()
        figures["chain_window"] = (epoch, time.time())
        assert result.ok and len(result.built()) == chain, result.failures
        figures["chain_s"] = wall
        figures["chain_ms_per_hop"] = wall / chain * 1000
        figures["chain_pipeline"] = result.pipeline.id
    return figures


def history(service: DistributedService, pipeline_id: int) -> dict[int, list[tuple[str, float]]]:
    """job id -> [(status, epoch seconds)] of a pipeline's jobs, from job_status_history."""
    rows = service.query(
        "select h.job_id, h.status, extract(epoch from h.timestamp) from job_status_history h "
        f"join jobs j on j.id = h.job_id where j.pipeline_id = {pipeline_id} order by h.id"
    )
    out: dict[int, list[tuple[str, float]]] = defaultdict(list)
    for job, status, ts in rows:
        out[int(job)].append((status, float(ts)))
    return out


def first(entries: list[tuple[str, float]], status: str) -> float | None:
    return next((t for s, t in entries if s == status), None)


def history_report(service: DistributedService, figures: dict[str, Any]) -> None:
    """Where a stage's time goes, read from the status history the service keeps."""
    heading("DiracX, from the status history (PostgreSQL timestamps)")
    wide = history(service, figures["wide_pipeline"])
    received = min(first(e, "Received") or 0 for e in wide.values())
    running = sorted(t for e in wide.values() if (t := first(e, "Running")) is not None)
    done = sorted(t for e in wide.values() if (t := first(e, "Done")) is not None)
    if running and done:
        line("wide: submit transaction -> first Running", f"{(running[0] - received) * 1e3:.1f} ms")
        line("wide: first Running -> last Done", f"{done[-1] - running[0]:.3f} s")
        line(
            "wide: jobs/s while building", f"{len(done) / max(done[-1] - running[0], 1e-9):.0f} /s"
        )
        per_worker = service.query(
            "select worker, count(*) from jobs "
            f"where pipeline_id = {figures['wide_pipeline']} group by worker order by worker"
        )
        line("wide: jobs per worker", ", ".join(n for _, n in per_worker))
        line(
            "wide: claim / finish transactions",
            f"{len({t for e in wide.values() for s, t in e if s == 'Running'})} / "
            f"{len({t for e in wide.values() for s, t in e if s == 'Done'})}",
        )
    chain = history(service, figures["chain_pipeline"])
    ordered = sorted(chain.values(), key=lambda e: first(e, "Received") or 0)
    by_done = sorted((first(e, "Done") or 0, e) for e in chain.values())
    hops, starts, builds = [], [], []
    for (done_a, _), (done_b, entries_b) in itertools.pairwise(by_done):
        hops.append(done_b - done_a)
        run_b = first(entries_b, "Running")
        if run_b is not None:
            starts.append(run_b - done_a)
            builds.append(done_b - run_b)
    if hops and ordered:
        line("chain: Done(i) -> Done(i+1), median", f"{statistics.median(hops) * 1e3:.2f} ms")
        line("  of which Done(i) -> Running(i+1)", f"{statistics.median(starts) * 1e3:.2f} ms")
        line("  of which Running(i+1) -> Done(i+1)", f"{statistics.median(builds) * 1e3:.2f} ms")
        workers = service.query(
            "select count(distinct worker) from jobs "
            f"where pipeline_id = {figures['chain_pipeline']}"
        )
        line("chain: workers that built a link", workers[0][0])


# --------------------------------------------------------------------------- raw Celery


@contextmanager
def raw_celery(base: Path, broker: str, backend: str, concurrency: int) -> Iterator[Any]:
    """Two raw Celery worker processes and the app, imported here too."""
    app_dir = base / "rawbench"
    app_dir.mkdir(parents=True)
    (app_dir / "rawbench.py").write_text(textwrap.dedent(RAW_APP))
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("DIRACX_")},
        "RAW_BROKER": broker,
        "RAW_BACKEND": backend,
        "PYTHONPATH": str(app_dir),
    }
    os.environ.update(RAW_BROKER=broker, RAW_BACKEND=backend)
    sys.path.insert(0, str(app_dir))
    import rawbench

    workers = []
    try:
        for i in range(WORKERS):
            argv = [
                sys.executable, "-m", "celery", "-A", "rawbench", "worker",
                "--pool", "threads", "--concurrency", str(concurrency), "-Q", RAW_QUEUE,
                "--without-heartbeat", "--without-mingle", "--without-gossip",
                "--loglevel", "WARNING", "-n", f"raw{i}@%h",
            ]  # fmt: skip
            proc = ManagedProcess(f"raw-{i}", argv, env, app_dir / f"raw-{i}.log", app_dir)
            proc.start()
            workers.append(proc)
        # ready when both answer: a group as big as both workers' concurrency, twice
        from celery import group

        for task in (rawbench.noop, rawbench.spawn):
            group(task.si() for _ in range(4 * concurrency)).apply_async().get(timeout=120)
        yield rawbench, workers
    finally:
        for proc in workers:
            proc.terminate()
        gc.collect()  # results still waiting to be dropped talk to Redis: while it runs
        rawbench.app.close()


def raw_figures(
    rawbench: Any, wide: int, chain: int, meters: dict[str, CpuMeter]
) -> dict[str, Any]:
    from celery import chain as celery_chain
    from celery import group

    figures: dict[str, Any] = {}
    for kind, task in (("noop", rawbench.noop), ("spawn", rawbench.spawn)):
        meters[f"celery {kind} wide"].start()
        t0 = time.perf_counter()
        group(task.si() for _ in range(wide)).apply_async().get(timeout=600)
        wall = time.perf_counter() - t0
        meters[f"celery {kind} wide"].stop()
        figures[f"{kind}_wide_s"] = wall
        figures[f"{kind}_wide_tasks_per_s"] = wide / wall

        meters[f"celery {kind} chain"].start()
        t0 = time.perf_counter()
        celery_chain(task.si() for _ in range(chain)).apply_async().get(timeout=600)
        wall = time.perf_counter() - t0
        meters[f"celery {kind} chain"].stop()
        figures[f"{kind}_chain_s"] = wall
        figures[f"{kind}_chain_ms_per_hop"] = wall / chain * 1000
    return figures


# --------------------------------------------------------------------------- --profile


def probe_report(probe_dir: Path, service: DistributedService, figures: dict[str, Any]) -> None:
    """Wall time per function and process in each phase, from the probe's timers."""
    roles = {service.api.pid: "api"} | {w.pid: f"worker-{i}" for i, w in enumerate(service.workers)}
    records: list[tuple[str, dict[str, Any]]] = []
    for path in sorted(probe_dir.glob("*.jsonl")):
        role = roles.get(int(path.stem), "other")
        for raw in path.read_text().splitlines():
            rec = json.loads(raw)
            if rec["f"] == "probe:missing":
                print(f"  (probe: not found in {role}: {', '.join(rec['names'])})")
            elif not rec["f"].startswith("probe:"):
                records.append((role, rec))
    for phase, count, unit in (
        ("wide", figures["wide"], "stage"),
        ("chain", figures["chain"], "hop"),
    ):
        start, end = figures["diracx"][f"{phase}_window"]
        totals: dict[tuple[str, str], list[float]] = defaultdict(list)
        for role, rec in records:
            if start <= rec["t0"] <= end:
                # one worker's figures stand for both: a job is built on one of them
                who = "worker" if role.startswith("worker") else role
                totals[(who, rec["f"])].append(rec["dt"])
        heading(f"--profile, {phase}: wall time in the timed functions (probe), per {unit}")
        print(f"  {'process':<8} {'function':<40} {'calls':>7} {'total s':>9} {'ms/' + unit:>9}")
        for (who, name), dts in sorted(totals.items(), key=lambda kv: -sum(kv[1]))[:22]:
            total = sum(dts)
            print(f"  {who:<8} {name:<40} {len(dts):>7} {total:>9.3f} {total / count * 1e3:>9.3f}")


# --------------------------------------------------------------------------- main


def cpu_report(meters: dict[str, CpuMeter], counts: dict[str, int]) -> None:
    heading("CPU per stage or task (ms), by process group")
    names = sorted({k for m in meters.values() for k in m.used})
    print(f"  {'phase':<20}" + "".join(f"{n[:16]:>17}" for n in names))
    for phase, meter in meters.items():
        per = counts[phase]
        cells = "".join(f"{meter.used.get(n, 0.0) / per * 1e3:>17.2f}" for n in names)
        print(f"  {phase:<20}{cells}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wide", type=int, default=None, help="wide stages (default 1000)")
    parser.add_argument("--chain", type=int, default=None, help="chained stages (default 200)")
    parser.add_argument("--quick", action="store_true", help="100 wide and 20 chained")
    parser.add_argument("--s3", action="store_true", help="the store in moto's S3 server")
    parser.add_argument("--profile", action="store_true", help="also show where the time goes")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the directory (logs)")
    args = parser.parse_args(argv)
    wide = args.wide or (100 if args.quick else 1000)
    chain = args.chain or (20 if args.quick else 200)

    base = Path(tempfile.mkdtemp(prefix="diracx-bench-scaleout-"))
    print(f"bench_scaleout: {wide} wide, {chain} chained; {WORKERS} workers x {SLOTS} slots")
    print(f"  {platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}")
    print(f"  load average at start: {loadavg()}; directory {base}")
    extra_env: dict[str, str] = {}
    probe_dir = base / "probe"
    if args.profile:
        extra_env = {"PYTHONPATH": str(PROBE_DIR), PROBE_ENV: str(probe_dir)}
    t0 = time.perf_counter()
    pg = start_postgresql()
    redis = start_redis()
    service: DistributedService | None = None
    figures: dict[str, Any] = {"wide": wide, "chain": chain, "workers": WORKERS, "slots": SLOTS}
    meters: dict[str, CpuMeter] = {}
    counts: dict[str, int] = {}
    try:
        service = start_distributed(
            base / "diracx",
            workers=WORKERS,
            postgresql=pg,
            redis=redis,
            s3=None if args.s3 else False,
            worker_slots=SLOTS,
            extra_env=extra_env,
        )
        print(f"  servers up in {time.perf_counter() - t0:.1f} s (PostgreSQL, Redis, API, workers)")
        groups = {
            "api": [service.api.pid],
            "workers+builds": [w.pid for w in service.workers],
            "postgresql": [pg.process.pid],
            "redis": [redis.process.pid],
        }
        for phase, n in (("diracx wide", wide), ("diracx chain", chain)):
            meters[phase] = CpuMeter(groups)
            counts[phase] = n
        os.environ.update(service.env)
        os.environ["DIRACX_DATA_DIR"] = str(base / "client")
        figures["diracx"] = diracx_figures(service, wide, chain, meters)

        with raw_celery(base, redis.url(5), redis.url(6), SLOTS) as (rawbench, raw_workers):
            raw_groups = {
                "api": [],
                "workers+builds": [w.pid for w in raw_workers],
                "postgresql": [],
                "redis": [redis.process.pid],
            }
            for kind in ("noop", "spawn"):
                for shape, n in (("wide", wide), ("chain", chain)):
                    meters[f"celery {kind} {shape}"] = CpuMeter(raw_groups)
                    counts[f"celery {kind} {shape}"] = n
            figures["celery"] = raw_figures(rawbench, wide, chain, meters)

        d, c = figures["diracx"], figures["celery"]
        heading("Throughput (end to end, wall clock)")
        line(
            f"DiracX wide: {wide} stages",
            f"{d['wide_stages_per_s']:.0f} /s",
            f"{d['wide_s']:.2f} s",
        )
        for kind in ("noop", "spawn"):
            line(
                f"raw Celery group of {wide}, {kind} task",
                f"{c[f'{kind}_wide_tasks_per_s']:.0f} /s",
                f"{c[f'{kind}_wide_s']:.2f} s",
            )
        line(
            f"DiracX chain: {chain} stages",
            f"{d['chain_ms_per_hop']:.2f} ms/hop",
            f"{d['chain_s']:.2f} s",
        )
        for kind in ("noop", "spawn"):
            line(
                f"raw Celery chain of {chain}, {kind} task",
                f"{c[f'{kind}_chain_ms_per_hop']:.2f} ms/hop",
                f"{c[f'{kind}_chain_s']:.2f} s",
            )
        heading("Ratios DiracX / raw Celery (target: wide >= 1, chained hop <= 1)")
        ratios = {}
        for kind in ("noop", "spawn"):
            ratios[f"wide_vs_{kind}"] = d["wide_stages_per_s"] / c[f"{kind}_wide_tasks_per_s"]
            ratios[f"hop_vs_{kind}"] = d["chain_ms_per_hop"] / c[f"{kind}_chain_ms_per_hop"]
            line(f"wide stages/s vs {kind} task", f"{ratios[f'wide_vs_{kind}']:.2f}")
            line(f"ms per chained hop vs {kind} task", f"{ratios[f'hop_vs_{kind}']:.2f}")
        figures["ratios"] = ratios
        cpu_report(meters, counts)
        figures["cpu_ms"] = {
            phase: {k: v / counts[phase] * 1e3 for k, v in m.used.items()}
            for phase, m in meters.items()
        }
        history_report(service, d)
        if args.profile:
            probe_report(probe_dir, service, figures)
        print(f"\n  load average at the end: {loadavg()}; at {datetime.now():%Y-%m-%d %H:%M}")
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        if service is not None:
            service.stop()
        redis.stop()
        pg.stop()
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
