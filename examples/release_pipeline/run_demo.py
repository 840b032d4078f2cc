"""`make demo`: run the release pipeline twice on the embedded engine.

The first run builds what this machine has never built; the second must
build nothing and start no job (every stage comes from the store).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PIPELINE = Path(__file__).resolve().parent / "pipeline.py"


def dirac(*args: str, capture: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diracx.cli", *args], text=True, capture_output=capture, check=False
    )


def main() -> int:
    shown = PIPELINE.relative_to(Path.cwd()) if PIPELINE.is_relative_to(Path.cwd()) else PIPELINE
    print(f"$ dirac run {shown}")
    first = dirac("run", str(PIPELINE))
    if first.returncode != 0:
        print("the first run failed", file=sys.stderr)
        return first.returncode
    print("\n$ dirac run --json ... (again)")
    second = dirac("run", "--json", str(PIPELINE), capture=True)
    if second.returncode != 0:
        print(second.stdout, second.stderr, file=sys.stderr)
        return second.returncode
    summary = json.loads(second.stdout)
    print(
        f"second run: {len(summary['built'])} built, {len(summary['cached'])} cached, "
        f"{len(summary['failed'])} failed in {summary['elapsed']:.3f} s"
    )
    if summary["built"] or summary["failed"]:
        print("unexpected: the second run should build nothing", file=sys.stderr)
        return 1
    show_release(summary["targets"]["release"]["rref"])
    return 0


def show_release(rref: str) -> None:
    """Read the release straight from the store, as any later program could."""
    from diracx.api import connect

    with connect() as session:
        release = session.realization(rref)
        print(f"\nthe release ({rref[:16]}…) holds: {', '.join(release.files())}")
        print(release.read_text("RELEASE.txt"), end="")


if __name__ == "__main__":
    sys.exit(main())
