"""Unpacking an OCI layer: ``diracx.core.oci.unpack_layer`` against ``tar -x`` in the same run.

    uv run --no-sync python benchmarks/bench_oci_unpack.py            # ~330 MB layer, 3 rounds
    uv run --no-sync python benchmarks/bench_oci_unpack.py --quick    # ~80 MB, 2 rounds
    uv run --no-sync python benchmarks/bench_oci_unpack.py --small-files 40000 --large-mb 40 \\
        --large-files 4 --rounds 5 --json figures.json

The layer is built here (deterministic pseudo-random contents, half compressible): many
small files in nested directories, a few large ones, some symlinks and hard links, as an
uncompressed tar and as gzip (level 1). Each round unpacks it with ``tar -xf`` (``tar -xzf``)
and with ``unpack_layer(..., overlay_whiteouts=True)`` (what the oci executor does: one
lower directory per layer) into fresh directories, alternating which goes first; the
page cache is flushed (``sync``) before every run, outside the timing. The figure is the
median wall time; MB/s is uncompressed megabytes per second; ratio = tar time / our time
(the target is >= 0.80). CPU s is user+system CPU (tar with its gzip child; unpack_layer
with its decompressing thread): on a busy machine the CPU ratio is the steadier figure.
Both results are compared (paths, sizes, modes, link targets).
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from diracx.core.oci import unpack_layer


def build_layer(path: Path, *, small: int, large: int, large_mb: int, seed: int = 42) -> int:
    """Write the layer tar; returns the total size of the file contents."""
    rng = random.Random(seed)
    noise = rng.randbytes(1 << 20)
    text = b"".join(f"line {i}: the quick brown fox jumps over the lazy dog\n".encode()
                    for i in range(20000))  # fmt: skip

    def content(size: int, salt: int) -> bytes:
        # half incompressible noise, half text: gzip does real work, like on real layers
        out = bytearray()
        while len(out) < size:
            off = (salt * 7919 + len(out)) % (len(noise) - 4096)
            out += noise[off : off + 4096] + text[off % 500000 : off % 500000 + 4096]
        return bytes(out[:size])

    total = 0
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.linkname = kind, mode, link
            info.mtime, info.uid, info.gid = 1_700_000_000, 0, 0
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        dirs = [f"usr/lib/pkg{i // 400:03d}/sub{i // 40 % 10}" for i in range(0, small, 40)]
        made: set[str] = set()
        for d in dirs:
            parts = d.split("/")
            for n in range(1, len(parts) + 1):
                p = "/".join(parts[:n])
                if p not in made:
                    made.add(p)
                    add(p, tarfile.DIRTYPE, 0o755)
        for i in range(small):
            # sizes like a distribution's: most files small, some tens of kB
            size = int(rng.lognormvariate(8.0, 1.3)) % 200_000
            data = content(size, i)
            total += size
            add(f"{dirs[i // 40]}/f{i:06d}.py", tarfile.REGTYPE, 0o644 if i % 9 else 0o755, data)
            if i % 97 == 0:
                add(f"{dirs[i // 40]}/l{i:06d}", tarfile.SYMTYPE, 0o777, link=f"f{i:06d}.py")
            if i % 211 == 0:
                add(f"{dirs[i // 40]}/h{i:06d}", tarfile.LNKTYPE, 0o644,
                    link=f"{dirs[i // 40]}/f{i:06d}.py")  # fmt: skip
        add("opt", tarfile.DIRTYPE, 0o755)
        add("opt/big", tarfile.DIRTYPE, 0o755)
        for j in range(large):
            data = content(large_mb << 20, 10**6 + j)
            total += len(data)
            add(f"opt/big/blob{j}.bin", tarfile.REGTYPE, 0o644, data)
    return total


def gzip_file(src: Path, dest: Path) -> None:
    with open(src, "rb") as f, gzip.GzipFile(dest, "wb", compresslevel=1, mtime=0) as out:
        shutil.copyfileobj(f, out, 1 << 20)


def summary(root: Path) -> dict[str, tuple[int, int, str]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            link = os.readlink(p) if os.path.islink(p) else ""
            out[os.path.relpath(p, root)] = (st.st_mode, st.st_size if not dirnames else 0, link)
    return {k: (m, s if (m >> 12) != 4 else 0, link) for k, (m, s, link) in out.items()}


def cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def run_tar(blob: Path, dest: Path, gz: bool) -> tuple[float, float]:
    """(wall, CPU) seconds of tar and its gzip child."""
    dest.mkdir()
    os.sync()
    c, t = cpu(resource.RUSAGE_CHILDREN), time.perf_counter()
    subprocess.run(["tar", "-xzf" if gz else "-xf", str(blob), "-C", str(dest)], check=True)
    return time.perf_counter() - t, cpu(resource.RUSAGE_CHILDREN) - c


def run_ours(blob: Path, dest: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of unpack_layer (all threads of this process)."""
    os.sync()
    c, t = cpu(resource.RUSAGE_SELF), time.perf_counter()
    unpack_layer(blob, dest, overlay_whiteouts=True)
    return time.perf_counter() - t, cpu(resource.RUSAGE_SELF) - c


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small-files", type=int, default=20000)
    parser.add_argument("--large-files", type=int, default=4)
    parser.add_argument("--large-mb", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="5000 small files, 2 x 20 MB, 3 rounds"
    )
    parser.add_argument("--dir", type=Path, default=None, help="where to work (default: $TMPDIR)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args()
    if args.quick:
        args.small_files, args.large_files, args.large_mb, args.rounds = 5000, 2, 20, 3
    if shutil.which("tar") is None:
        print("tar is not installed", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-oci-", dir=args.dir))
    figures: dict[str, object] = {}
    try:
        t = time.perf_counter()
        layer = work / "layer.tar"
        content = build_layer(
            layer, small=args.small_files, large=args.large_files, large_mb=args.large_mb
        )
        gz = work / "layer.tar.gz"
        gzip_file(layer, gz)
        tar_mb = layer.stat().st_size / 1e6
        built = time.perf_counter() - t
        print(f"layer: {args.small_files} small files + {args.large_files} x {args.large_mb} MB; "
              f"tar {tar_mb:.0f} MB (contents {content / 1e6:.0f} MB), "
              f"gzip {gz.stat().st_size / 1e6:.0f} MB; built in {built:.1f} s")  # fmt: skip
        print(f"running as {'root' if os.geteuid() == 0 else 'a user'}; "
              f"{os.cpu_count()} CPUs; load {os.getloadavg()[0]:.2f}\n")  # fmt: skip
        print(f"{'layer':<6} {'tool':<14} {'median s':>9} {'MB/s':>8} {'CPU s':>7}   runs (s)")
        for kind, blob in (("tar", layer), ("gzip", gz)):
            times: dict[str, list[float]] = {"tar": [], "unpack": []}
            cpus: dict[str, list[float]] = {"tar": [], "unpack": []}
            for r in range(args.rounds):
                order = ["tar", "unpack"] if r % 2 == 0 else ["unpack", "tar"]
                for who in order:
                    # a fresh directory each time; the old ones are removed only after the
                    # rounds: freeing blocks just before a run slows ext4 (discard) at random
                    dest = work / f"out-{who}-{r}"
                    if who == "tar":
                        wall, used = run_tar(blob, dest, kind == "gzip")
                    else:
                        wall, used = run_ours(blob, dest)
                    times[who].append(wall)
                    cpus[who].append(used)
            same = summary(work / "out-tar-0") == summary(work / "out-unpack-0")
            medians = {who: statistics.median(ts) for who, ts in times.items()}
            cpu_medians = {who: statistics.median(ts) for who, ts in cpus.items()}
            for who, label in (("tar", f"tar -x{'z' if kind == 'gzip' else ''}f"),
                               ("unpack", "unpack_layer")):  # fmt: skip
                runs = " ".join(f"{x:.2f}" for x in times[who])
                rate = tar_mb / medians[who]
                print(f"{kind:<6} {label:<14} {medians[who]:>9.2f} "
                      f"{rate:>8.0f} {cpu_medians[who]:>7.2f}   {runs}")  # fmt: skip
            ratio = medians["tar"] / medians["unpack"]
            cpu_ratio = cpu_medians["tar"] / cpu_medians["unpack"]
            print(f"{kind:<6} ratio (tar time / unpack_layer time) = {ratio:.2f} "
                  f"{'(>= 0.80: OK)' if ratio >= 0.8 else '(< 0.80: BELOW TARGET)'}; "
                  f"CPU ratio {cpu_ratio:.2f}; same files: {same}\n")  # fmt: skip
            figures[kind] = {
                "tar_s": times["tar"],
                "unpack_s": times["unpack"],
                "tar_median_s": medians["tar"],
                "unpack_median_s": medians["unpack"],
                "mb": tar_mb,
                "ratio": ratio,
                "tar_cpu_s": cpus["tar"],
                "unpack_cpu_s": cpus["unpack"],
                "cpu_ratio": cpu_ratio,
                "same_files": same,
            }
            for r in range(args.rounds):
                for who in ("tar", "unpack"):
                    shutil.rmtree(work / f"out-{who}-{r}", ignore_errors=True)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
