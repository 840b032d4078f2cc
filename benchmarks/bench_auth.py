"""Benchmark authenticated GET throughput under concurrency on loopback (issue 6, "Must show" 5).

    uv run --no-sync python benchmarks/bench_auth.py                  # 1 then 2 processes
    uv run --no-sync python benchmarks/bench_auth.py --workers 1 --connections 16 --duration 5
    uv run --no-sync python benchmarks/bench_auth.py --backend postgresql --json out.json
    uv run --no-sync --with pyinstrument python benchmarks/bench_auth.py --profile

The real service in a process of its own, configured with ``DIRACX_*`` variables only,
on a migrated SQLite file (or a PostgreSQL server started with
``diracx.testing.postgresql``), with a configuration file that declares one VO and one
service account. ``--workers 1`` runs what ``dirac server`` and the services image
run (``python -m diracx.routers serve``: one process, access log on); ``--workers N``
runs uvicorn's supervisor (``uvicorn --factory diracx.routers.factory:create_app
--workers N``). The benchmark logs in as the service account (``POST /api/auth/token``,
``grant_type=client_credentials``: a real signed JWT), then keeps ``--connections``
keep-alive connections busy with ``GET`` requests for ``--duration`` seconds, from
another process, on:

- the small authenticated GET (``/api/auth/userinfo``; else the first of
  ``/api/config``, ``/api/store/pins`` the service has): the token is checked on every
  request (``TokenService.verify``: signature and claims on its first use, then from a
  cache of verified tokens; its family's revocation every time);
- ``/api/health/live``, public: the floor of the same server (routing, middleware,
  HTTP), the baseline of the ratio.

The load generator is ``wrk`` when it is installed (Debian's ``wrk``), else a small
HTTP/1.1 client on asyncio streams (``--client python`` forces it, ``both`` runs
both). CPU seconds per request are shown for the server (all its processes) and the
client, and how many cores the rest of the machine kept busy meanwhile: on a shared
machine, other processes take cores from the server. Latency p50 and p99 are of
closed-loop requests (each connection sends its next request when the answer arrives),
so with 64 connections they are mostly queueing. ``--profile`` then calls the app
in-process (no socket, no HTTP) to split the server's time per request: the app for
the public and the authenticated GET, ``TokenService.verify`` from its cache, a JWT's
signature check, and pyinstrument's tree of the authenticated request.

With h11 (uvicorn's pure-Python HTTP, the one installed) and several workers,
uvicorn's supervisor binds the socket without ``IPPROTO_TCP``, so asyncio does not set
``TCP_NODELAY`` on the connections; each keep-alive answer then waits ~40 ms for the
client's delayed ACK, and throughput is capped at connections / 44 ms whatever the CPU
(uvicorn issue 3149; uvloop sets it anyway).

Target on this 2-core machine: at least 1000 authenticated requests/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from diracx.core.passwords import hash_password
from diracx.core.secrets import new_key
from diracx.db.migrate import upgrade
from diracx.testing.postgresql import PostgreSQLServer, start_postgresql
from diracx.testing.utils import free_port

HOST = "127.0.0.1"
VO, GROUP, CLIENT_ID = "bench", "bench_user", "bench-service"
# the first the service has: the cheapest route that needs a token
AUTHENTICATED_PATHS = ["/api/auth/userinfo", "/api/config", "/api/store/pins"]
BASELINE_PATH = "/api/health/live"
CLK_TCK = os.sysconf("SC_CLK_TCK")
TARGET_RPS = 1000


# -- the service -----------------------------------------------------------------------


def write_config(path: Path, secret: str) -> None:
    properties = ["NormalUser"]
    path.write_text(
        json.dumps(  # JSON is YAML
            {
                "vos": {
                    VO: {
                        "default_group": GROUP,
                        "groups": {GROUP: {"properties": properties}},
                        "users": {},
                    }
                },
                "service_accounts": {
                    CLIENT_ID: {"secret_hash": hash_password(secret), "vo": VO, "group": GROUP}
                },
            },
            indent=2,
        )
    )


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def pids(self) -> list[int]:
        """The uvicorn process and its workers (for their CPU time)."""
        return [self.process.pid, *children(self.process.pid)]


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / CLK_TCK


def machine_cpu_seconds() -> float:
    """Busy CPU seconds of the whole machine (all processes, all cores): /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def wait_live(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the service exited ({process.returncode}):\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + BASELINE_PATH, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise RuntimeError(f"the service did not answer in {timeout} s:\n{log.read_text()}")


def server_argv(workers: int, port: int) -> list[str]:
    """One process: what ``dirac server`` and the services image run. Several: uvicorn's
    supervisor (``--workers``), which the service does not use yet."""
    if workers == 1:
        argv = ["-m", "diracx.routers", "serve", "--no-migrate"]
        return [*argv, "--host", HOST, "--port", str(port)]
    return [
        "-m", "uvicorn", "--factory", "diracx.routers.factory:create_app", "--workers",
        str(workers), "--host", HOST, "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip


def server_label(workers: int) -> str:
    if workers == 1:
        return "python -m diracx.routers serve (1 process)"
    return f"uvicorn --factory diracx.routers.factory:create_app --workers {workers}"


@contextmanager
def run_server(env: dict[str, str], workers: int, tmp: Path) -> Iterator[Server]:
    port = free_port()
    argv = server_argv(workers, port)
    log = tmp / f"server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, *argv], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    server = Server(f"http://{HOST}:{port}", process, log)
    try:
        wait_live(server.url, process, log)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def service_env(tmp: Path, db_url: str, config: Path, service_token: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIRACX_")}
    env.update(
        DIRACX_DATA_DIR=str(tmp / "data"),
        DIRACX_DB_URL=db_url,
        DIRACX_CONFIG=str(config),
        DIRACX_SERVICE_TOKEN=service_token,
        DIRACX_SECRET_KEY=new_key(),  # seals the token signing keys
        DIRACX_MIN_CLIENT_VERSION="0.0.0",
    )
    return env


def get_token(url: str, secret: str) -> tuple[str, str]:
    """A JWT through the client-credentials grant, and how it was obtained."""
    body = urllib.parse.urlencode(
        {"grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": secret}
    ).encode()
    request = urllib.request.Request(f"{url}/api/auth/token", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return json.loads(r.read())["access_token"], "client_credentials JWT"
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 405):
            return "", "no token endpoint"
        raise RuntimeError(f"POST /api/auth/token: {exc.code} {exc.read().decode()}") from None


def pick_path(url: str, token: str) -> str:
    with urllib.request.urlopen(f"{url}/api/openapi.json", timeout=10) as r:
        paths = json.loads(r.read())["paths"]
    for path in AUTHENTICATED_PATHS:
        if "get" in paths.get(path, {}):
            request = urllib.request.Request(url + path, headers=auth_headers(token))
            with urllib.request.urlopen(request, timeout=10) as r:
                if r.status == 200:
                    return path
    raise RuntimeError(f"none of {AUTHENTICATED_PATHS} answers 200 with the token")


def auth_headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


# -- the load ------------------------------------------------------------------------


@dataclass
class Figures:
    client: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float
    client_cpu_s: float
    others_cpu_s: float = 0.0  # what the rest of the machine took meanwhile

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _connection(
    port: int, request: bytes, stop: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        while (start := time.perf_counter()) < stop:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            match = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
            if match is None:
                raise RuntimeError(f"no Content-Length in {head!r}")
            await reader.readexactly(int(match.group(1)))
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(int(head[9:12]))
    finally:
        writer.close()


async def _load(port: int, request: bytes, connections: int, seconds: float) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[int] = []
    start = time.perf_counter()
    await asyncio.gather(
        *(
            _connection(port, request, start + seconds, latencies, errors)
            for _ in range(connections)
        )
    )
    return {
        "latencies": latencies,
        "errors": len(errors),
        "codes": sorted(set(errors)),
        "seconds": time.perf_counter() - start,
    }


def _load_process(args: tuple[int, bytes, int, float], out: Any) -> None:
    port, request, connections, seconds = args
    result = asyncio.run(_load(port, request, connections, seconds))
    result["cpu_s"] = sum(os.times()[:2])
    out.send(result)


def python_load(url: str, path: str, token: str, connections: int, seconds: float) -> Figures:
    """The asyncio client, in a process of its own (not competing for this one's GIL)."""
    parsed = urllib.parse.urlsplit(url)
    headers = {"Host": parsed.netloc, **auth_headers(token)}
    request = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    args = (parsed.port or 80, (request + "\r\n").encode(), connections, seconds)
    proc = ctx.Process(target=_load_process, args=(args, sender))
    proc.start()
    result = receiver.recv()
    proc.join()
    lat = result["latencies"]
    if result["errors"]:
        print(f"  {path}: {result['errors']} answers were not 200: {result['codes']}")
    return Figures(
        client="python",
        requests=len(lat),
        errors=result["errors"],
        seconds=result["seconds"],
        p50_ms=statistics.median(lat) * 1000,
        p99_ms=pct(lat, 0.99) * 1000,
        server_cpu_s=0.0,
        client_cpu_s=result["cpu_s"],
    )


def _wrk_ms(text: str, label: str) -> float:
    match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no {label} latency in wrk's output:\n{text}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
    return float(match.group(1)) * scale


def wrk_load(url: str, path: str, token: str, connections: int, seconds: float) -> Figures:
    argv = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{seconds:g}s", "--latency"]
    for key, value in auth_headers(token).items():
        argv += ["-H", f"{key}: {value}"]
    before = os.times()
    out = subprocess.run([*argv, url + path], capture_output=True, text=True, check=True).stdout
    after = os.times()
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(bad.group(1)) if bad else 0
    if errors:
        print(f"  {path}: {errors} answers were not 2xx/3xx")
    return Figures(
        client="wrk",
        requests=requests,
        errors=errors,
        seconds=seconds,
        p50_ms=_wrk_ms(out, "50%"),
        p99_ms=_wrk_ms(out, "99%"),
        server_cpu_s=0.0,
        client_cpu_s=(after.children_user + after.children_system)
        - (before.children_user + before.children_system),
    )


def measure(
    server: Server, path: str, token: str, client: str, connections: int, seconds: float
) -> Figures:
    load = wrk_load if client == "wrk" else python_load
    load(server.url, path, token, connections, min(1.0, seconds))  # warm-up: caches, JIT paths
    pids = server.pids()
    cpu, machine = cpu_seconds(pids), machine_cpu_seconds()
    figures = load(server.url, path, token, connections, seconds)
    figures.server_cpu_s = cpu_seconds(pids) - cpu
    busy = machine_cpu_seconds() - machine
    figures.others_cpu_s = max(0.0, busy - figures.server_cpu_s - figures.client_cpu_s)
    return figures


# -- the report ----------------------------------------------------------------------


def line(label: str, f: Figures) -> str:
    per_req = lambda s: f"{s / max(f.requests, 1) * 1e6:6.0f}"  # noqa: E731
    return (
        f"  {label:34} {f.client:7} {f.rps:9.0f} {f.p50_ms:8.2f} {f.p99_ms:8.2f} "
        f"{per_req(f.server_cpu_s)} {per_req(f.client_cpu_s)} {f.errors:6d} "
        f"{f.others_cpu_s / f.seconds:7.2f}"
    )


HEADER = (
    f"  {'request':34} {'client':7} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
    f"{'srv µs':>6} {'cli µs':>6} {'errors':>6} {'others':>7}"
)


async def _asgi_get(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> int:
    """One GET straight into the ASGI app: no socket, no HTTP parser, no client."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"bench"), *headers],
        "client": (HOST, 1), "server": (HOST, 80),
    }  # fmt: skip
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    return status


async def _per_call_us(n: int, call: Any) -> float:
    for _ in range(min(200, n)):  # warm-up
        await call()
    start = time.process_time()  # CPU, not wall: other processes share the cores
    for _ in range(n):
        await call()
    return (time.process_time() - start) / n * 1e6


async def _profile(env: dict[str, str], secret: str, n: int) -> None:
    import httpx
    from pyinstrument import Profiler

    from diracx.core.settings import ServiceSettings
    from diracx.routers.factory import create_app
    from diracx.routers.queue import RecordingJobQueue

    saved = dict(os.environ)
    os.environ.update(env)  # the same DIRACX_* settings as the server's
    try:
        app = create_app(ServiceSettings(), job_queue=RecordingJobQueue())
    finally:
        os.environ.clear()
        os.environ.update(saved)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            r = await client.post(
                "/api/auth/token",
                data={"grant_type": "client_credentials", "client_id": CLIENT_ID,
                      "client_secret": secret},
            )  # fmt: skip
            r.raise_for_status()
            token = r.json()["access_token"]
        path = next(p for p in AUTHENTICATED_PATHS if p == "/api/auth/userinfo")
        auth = [(b"authorization", f"Bearer {token}".encode())]
        assert await _asgi_get(app, path, auth) == 200
        service = app.state.token_service
        figures = {
            f"app: GET {BASELINE_PATH}": await _per_call_us(
                n, lambda: _asgi_get(app, BASELINE_PATH, [])
            ),
            f"app: GET {path}, token": await _per_call_us(n, lambda: _asgi_get(app, path, auth)),
            "TokenService.verify (cached, as on every request)": await _per_call_us(
                n, lambda: service.verify(token)
            ),
        }

        async def decode() -> None:  # the signature check, done once per token
            service._decode(token)

        figures["JWT signature and claims (first use of a token)"] = await _per_call_us(
            n // 10, decode
        )
        print(f"\nin-process, no HTTP (CPU µs per call, {n} calls):")
        for label, us in figures.items():
            print(f"  {label:52} {us:8.1f}")
        profiler = Profiler(interval=0.0002, async_mode="disabled")
        profiler.start()
        for _ in range(n):
            await _asgi_get(app, path, auth)
        profiler.stop()
    print(f"\npyinstrument, GET {path} x {n} in-process (what the app spends):")
    print(profiler.output_text(unicode=True, color=False, show_all=False))


def profile_run(env: dict[str, str], secret: str, n: int = 5000) -> None:
    asyncio.run(_profile(env, secret, n))


def run_config(
    env: dict[str, str], workers: int, tmp: Path, secret: str, clients: list[str], args: Any
) -> list[dict[str, Any]]:
    """Start the service with *workers* processes, measure, stop it: one row per client."""
    rows = []
    with run_server(env, workers, tmp) as server:
        token, how = get_token(server.url, secret)
        if not token:  # no token endpoint: the static token, a bearer check but not a JWT
            token, how = env["DIRACX_SERVICE_TOKEN"], "static service token"
        path = pick_path(server.url, token)
        print(f"\n{server_label(workers)}; token: {how}")
        print(HEADER)
        for client in clients:
            n, seconds = args.connections, args.duration
            auth = measure(server, path, token, client, n, seconds)
            base = measure(server, BASELINE_PATH, "", client, n, seconds)
            print(line(f"GET {path} (token)", auth))
            print(line(f"GET {BASELINE_PATH} (public)", base))
            rows.append(
                {
                    "server": server_label(workers),
                    "workers": workers,
                    "client": client,
                    "path": path,
                    "token": how,
                    "authenticated": {**auth.__dict__, "rps": auth.rps},
                    "baseline": {**base.__dict__, "rps": base.rps},
                    "ratio": auth.rps / base.rps,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--workers", default="1,2",
        help="server processes, comma-separated configurations (1: `dirac server`)",
    )  # fmt: skip
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--client", choices=["auto", "wrk", "python", "both"], default="auto",
        help="load generator (auto: wrk when installed, else python)",
    )  # fmt: skip
    parser.add_argument("--profile", action="store_true", help="also profile with pyinstrument")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()
    clients = {
        "auto": ["wrk"] if shutil.which("wrk") else ["python"],
        "both": ["wrk", "python"],
    }.get(args.client, [args.client])
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(
        f"{machine}; {args.backend}; {args.connections} connections, {args.duration:g} s "
        f"per measurement; load average {os.getloadavg()[0]:.1f} before the run"
    )
    report: dict[str, Any] = {"machine": machine, "backend": args.backend, "runs": []}
    pg: PostgreSQLServer | None = None
    with tempfile.TemporaryDirectory(prefix="diracx-bench-auth-") as name:
        tmp = Path(name)
        try:
            if args.backend == "sqlite":
                db_url = f"sqlite+aiosqlite:///{tmp / 'diracx.db'}"
            else:
                pg = start_postgresql()
                db_url = pg.url(pg.create_database("bench"))
            upgrade(db_url)
            secret = secrets.token_urlsafe(24)
            config = tmp / "config.yaml"
            write_config(config, secret)
            env = service_env(tmp, db_url, config, secrets.token_urlsafe(24))
            for workers in (int(w) for w in args.workers.split(",")):
                report["runs"] += run_config(env, workers, tmp, secret, clients, args)
            print("  srv µs / cli µs: CPU time per request of the server (all its processes)")
            print("  and of the client; others: cores the rest of the machine kept busy meanwhile")
            print()
            for r in report["runs"]:
                print(
                    f"{r['server']} ({r['client']}): {r['authenticated']['rps']:.0f} "
                    f"authenticated req/s, {r['ratio']:.2f} x the public GET"
                )
            best = max(r["authenticated"]["rps"] for r in report["runs"])
            verdict = "met" if best >= TARGET_RPS else "MISSED"
            print(f"best: {best:.0f} authenticated req/s (target >= {TARGET_RPS}: {verdict})")
            if args.profile:
                profile_run(env, secret)
        finally:
            if pg is not None:
                pg.stop()
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
