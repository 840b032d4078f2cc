"""``dirac run --dry-run`` and ``--force``, as a user runs them, on a real DiracX."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from diracx.testing.distributed import DistributedService
from diracx.testing.engine import EngineProcess

from .test_cli import as_json, dirac, no_traceback

pytestmark = pytest.mark.timeout(300)
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ml_seeds" / "pipeline.py"
Service = EngineProcess | DistributedService

PIPELINE = """
from diracx.api import best, command, some

SALT = {salt!r}
TRAIN = (
    "set -e; n=$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); echo $n > $OUT/model; "
    "printf '{{\\"accuracy\\": %s}}' $n > $OUT/metrics.json"
)
prepare = command("prepare", ["sh", "-c", "seq 1 5 > $OUT/data"], config={{"salt": SALT}})
train = command(
    "train", ["sh", "-c", TRAIN], inputs={{"data": prepare}}, config={{"salt": SALT}},
    matcher=some(3),
)
evaluate = command(
    "evaluate",
    ["sh", "-c", 'ls "$IN_MODELS" > $OUT/dirs'],
    inputs={{"models": train}},
    config={{"salt": SALT}},
)
targets = [evaluate]
"""


@pytest.fixture
def engine(module_service: Service) -> Service:
    return module_service


def plan(path: Path, *args: str) -> dict[str, tuple[str, str]]:
    doc = as_json(dirac("run", "--dry-run", "--json", *args, str(path)))
    return {s["name"]: (s["action"], s["reason"]) for s in doc["stages"]}


def test_dry_run_and_force(engine: Service, tmp_path: Path) -> None:
    path = tmp_path / "seeds.py"
    path.write_text(textwrap.dedent(PIPELINE.format(salt=uuid.uuid4().hex)))
    assert plan(path) == {
        "prepare": ("build", "never built"),
        "train": ("build", "never built"),
        "evaluate": ("build", "never built"),
    }
    table = dirac("run", "--dry-run", str(path))
    assert table.returncode == 0, table.stdout + table.stderr
    assert "dry run" in table.stdout and "never built" in table.stdout
    assert "some(3)" in table.stdout and "0 to reuse, 3 to build" in table.stdout

    first = as_json(dirac("run", "--json", str(path)))
    assert first["built"] == ["evaluate", "prepare", "train"]
    reused = plan(path)
    assert {a for a, _ in reused.values()} == {"reuse"}
    assert reused["prepare"][1].startswith("cached (RRef ")
    assert as_json(dirac("run", "--json", str(path)))["built"] == []

    assert plan(path, "--force", "train") == {
        "prepare": reused["prepare"],
        "train": ("build", "forced"),
        "evaluate": ("build", "input 'models' is rebuilt (reused if unchanged)"),
    }
    forced = as_json(dirac("run", "--json", "--force", "train", str(path)))
    assert forced["built"] == ["evaluate", "train"] and forced["cached"] == ["prepare"]

    bad = dirac("run", "--dry-run", "--force", "nope", str(path))
    assert bad.returncode == 1 and "force names 'nope'" in bad.stderr
    no_traceback(bad)


def test_ml_example_five_seeds_best_then_cached_then_a_sixth(engine: Service) -> None:
    stages = ("prepare", "train", "evaluate")
    assert plan(EXAMPLE) == {name: ("build", "never built") for name in stages}
    first = as_json(dirac("run", "--json", str(EXAMPLE)))
    assert first["status"] == "Done" and sorted(first["built"]) == sorted(stages)
    assert len(models()) == 5  # best("accuracy", at_least=5): five seeds first
    cached = plan(EXAMPLE)
    assert {a for a, _ in cached.values()} == {"reuse"}
    assert cached["train"][1] == f"cached (RRef {most_accurate()[:12]}…)"
    assert as_json(dirac("run", "--json", str(EXAMPLE)))["built"] == []
    assert plan(EXAMPLE, "--force", "train") == {
        "prepare": cached["prepare"],
        "train": ("build", "forced"),
        "evaluate": ("build", "input 'model' is rebuilt (reused if unchanged)"),
    }
    forced = as_json(dirac("run", "--json", "--force", "train", str(EXAMPLE)))
    assert forced["status"] == "Done" and "train" in forced["built"]
    assert len(models()) == 6  # a sixth model; evaluate sees the best of the six
    again = plan(EXAMPLE)
    assert again["train"][1] == f"cached (RRef {most_accurate()[:12]}…)"
    assert again["evaluate"][0] == "reuse"
    # prepare is deterministic: rebuilt, it comes out the same, and nothing after it is
    # built again (early cutoff): no seventh model
    rebuilt = "input 'data' is rebuilt (reused if unchanged)"
    assert plan(EXAMPLE, "--force", "prepare") == {
        "prepare": ("build", "forced"),
        "train": ("build", rebuilt),
        "evaluate": ("build", rebuilt),
    }
    prepared = as_json(dirac("run", "--json", "--force", "prepare", str(EXAMPLE)))
    assert prepared["status"] == "Done" and prepared["built"] == ["prepare"]
    assert sorted(prepared["cached"]) == ["evaluate", "train"]
    assert len(models()) == 6


def models() -> list[dict[str, Any]]:
    """The example's train realizations (other tests of the module have a 'train' too)."""
    doc = as_json(dirac("run", "--dry-run", "--json", str(EXAMPLE)))
    dref = next(s["dref"] for s in doc["stages"] if s["name"] == "train")
    found: list[dict[str, Any]] = as_json(dirac("store", "ls", "--json", "--dref", dref))
    return found


def most_accurate() -> str:
    """The RRef of the train realization with the highest accuracy (ties: the oldest)."""
    ranked = sorted(models(), key=lambda r: (-r["metrics"]["accuracy"], r["created"]))
    rref: str = ranked[0]["rref"]
    return rref
