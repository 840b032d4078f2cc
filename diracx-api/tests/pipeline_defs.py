"""A small pipeline used by test_stages.py, in-process and in subprocesses.

Run as a script it prints the DRefs of its stages as JSON, like ``python pipeline.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from diracx.api import Stage, command, instantiate, stage


@stage
def summarize(data, out, title="report", limit=3):
    """Count the lines of every file of *data*."""
    counts = {p.name: len(p.read_text().splitlines()) for p in sorted(Path(data).iterdir())}
    (Path(out) / "summary.json").write_text(json.dumps({"title": title, "counts": counts}))
    return {"files": len(counts), "limit": limit}


@stage(name="merge-all", timeout=60)
def merge(left, right, out, sep="\n"):
    return sep


def build(title: str = "report") -> dict[str, Stage]:
    fetch = command("fetch", ["sh", "-c", "printf 'a\\nb\\n' > $OUT/data.txt"])
    other = command("other", ["sh", "-c", "echo x > $OUT/x.txt"], env={"LANGUAGE": "en"})
    report = summarize(data=fetch, title=title)
    merged = merge(left=report, right=other)
    return {"fetch": fetch, "other": other, "report": report, "merged": merged}


def drefs(title: str = "report") -> dict[str, str]:
    inst = instantiate(build(title))
    return {key: dref for key, dref in zip(inst.keys or [], inst.targets, strict=True)}


if __name__ == "__main__":
    print(json.dumps(drefs(*sys.argv[1:]), sort_keys=True))
