"""Matchers, force and the dry run end to end: a real DiracX, real workers, real builds.

Runs on the embedded engine, then on the distributed service (PostgreSQL, Redis, S3
and worker processes), as ``test_session.py`` does. Every test salts its stages so
that nothing another test built is a cache hit.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from diracx.api import (
    Session,
    Stage,
    all_,
    best,
    command,
    connect,
    exact,
    latest,
    only,
    some,
    stage,
)
from diracx.api.sync import call
from diracx.core.exceptions import DiracxError
from diracx.testing.distributed import DistributedService
from diracx.testing.engine import EngineProcess

pytestmark = pytest.mark.timeout(300)
Service = EngineProcess | DistributedService

# A non-deterministic build: random bytes, and a random "accuracy" in metrics.json.
TRAIN = (
    "set -e; n=$(od -An -N4 -tu4 /dev/urandom | tr -d ' '); "
    "head -c 32 /dev/urandom > $OUT/weights; echo $n > $OUT/model; "
    "printf '{\"accuracy\": %s}' $n > $OUT/metrics.json"
)


@pytest.fixture
def salt() -> str:
    return uuid.uuid4().hex


def sh(name: str, script: str, salt: str, **kwargs: Any) -> Stage:
    return command(name, ["sh", "-c", script], config={"salt": salt}, **kwargs)


def realizations(s: Session, dref: str) -> list[Any]:
    """The realizations of a derivation, oldest first (read through the client)."""
    return call(s._portal, s.async_session.client.list_realizations, dref)


def reasons(plan: Any) -> dict[str, tuple[str, str]]:
    return {s.name: (s.action, s.reason) for s in plan.stages}


@stage(matcher=best("loss", n=2, mode="lower"), cpus=2)
def fit(data: Any, out: Any, rate: float = 0.1) -> None:
    """A stage function with a matcher (and scheduling): never built here."""


def test_matchers_are_data_on_stages() -> None:
    import diracx.api

    assert diracx.api.all() == all_() and only() == command("x", ["true"]).matcher
    made = fit(data=command("d", ["true"]))
    assert made.matcher == best("loss", n=2, mode="lower") and made.scheduling.cpus == 2
    assert made.matcher.describe() == "best(loss, 2, lower)"
    assert command("x", ["true"], matcher=some(2)).dref != command("x", ["true"]).dref
    assert exact("b" * 64, "a" * 64).rrefs == ("a" * 64, "b" * 64)
    with pytest.raises(ValueError):
        some(0)
    with pytest.raises(ValueError):
        best("acc", mode="up")  # type: ignore[arg-type]


def test_some_five_seeds_then_cached_then_force_adds_a_sixth(
    module_service: Service, salt: str
) -> None:
    train = sh("train", TRAIN, salt, matcher=some(5))
    pick = sh(
        "pick",
        'set -e; ls "$IN_MODELS" > $OUT/dirs; cat "$IN_MODELS"/*/model | sort > $OUT/models',
        salt,
        inputs={"models": train},
    )
    with connect() as s:
        plan = s.plan([pick])
        assert reasons(plan) == {
            "train": ("build", "never built"),
            "pick": ("build", "never built"),
        }
        assert [st.builds for st in plan.stages] == [5, 1]

        _, result = s.run([pick])
        assert result.ok, result.failures
        assert {st.name for st in result.built()} == {"train", "pick"}
        [stage] = [st for st in result.stages if st.name == "pick"]
        out = s.realization(stage.rref or "")
        assert out.read_text("dirs").split() == ["0", "1", "2", "3", "4"]
        models = out.read_text("models").split()
        assert len(set(models)) == 5  # five distinct realizations, one per directory
        drefs = {st.name: st.dref for st in result.stages}
        realized = realizations(s, drefs["train"])
        assert len(realized) == 5
        assert all("accuracy" in r.metrics for r in realized)
        [pick_info] = realizations(s, drefs["pick"])
        assert sorted(pick_info.context["models"]) == sorted(r.rref for r in realized)

        plan = s.plan([pick])
        assert [st.action for st in plan.stages] == ["reuse", "reuse"]
        assert reasons(plan)["train"][1].startswith("cached (some(5): 5 RRefs ")
        _, again = s.run([pick])
        assert again.ok and again.built() == []  # the rerun builds nothing

        plan = s.plan([pick], force=["train"])
        assert reasons(plan) == {
            "train": ("build", "forced"),
            "pick": ("build", "input 'models' is rebuilt (reused if unchanged)"),
        }
        _, forced = s.run([pick], force=["train"])
        assert forced.ok and {st.name for st in forced.built()} == {"train", "pick"}
        assert len(realizations(s, drefs["train"])) == 6
        [stage] = [st for st in forced.stages if st.name == "pick"]
        assert len(s.realization(stage.rref or "").read_text("dirs").split()) == 6


def test_best_picks_the_highest_metric_and_latest_the_newest(
    module_service: Service, salt: str
) -> None:
    score = sh("score", TRAIN, salt, matcher=best("accuracy"))
    use = sh("use", 'cp "$IN_SCORE/model" $OUT/model', salt, inputs={"score": score})
    with connect() as s:
        s.realize(score)
        s.realize(score, force=[score])
        s.realize(score, force=["score"])
        realized = realizations(s, score.dref)
        assert len(realized) == 3
        top = max(realized, key=lambda r: r.metrics["accuracy"])
        plan = s.plan([use])
        assert reasons(plan)["score"] == ("reuse", f"cached (RRef {top.rref[:12]}…)")
        got = s.realize(use)
        assert got.read_text("model").strip() == str(top.metrics["accuracy"])
        [used] = realizations(s, use.dref)
        assert used.context == {"score": [top.rref]}

        newest = sh("newest", TRAIN, salt, matcher=latest(2))
        both = sh("both", 'ls "$IN_NEW" > $OUT/dirs', salt, inputs={"new": newest})
        s.realize(newest)
        s.realize(newest, force=["newest"])
        assert s.realize(both).read_text("dirs").split() == ["0", "1"]


def test_only_refuses_two_different_realizations(module_service: Service, salt: str) -> None:
    flaky = sh("flaky", TRAIN, salt)  # only(), but not deterministic
    with connect() as s:
        s.realize(flaky)
        s.realize(flaky, force=["flaky"])
        rrefs = [r.rref for r in realizations(s, flaky.dref)]
        assert len(rrefs) == 2
        with pytest.raises(DiracxError) as info:
            s.realize(flaky)
        assert all(r in str(info.value) for r in rrefs)
        [stage] = s.plan(flaky).stages
        assert stage.action == "error" and all(r in stage.reason for r in rrefs)
        with pytest.raises(DiracxError, match="force names 'nope'"):
            s.run(flaky, force=["nope"])
