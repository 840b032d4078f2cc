"""Matchers as data, evaluated: what each one picks, and when it asks for builds."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from diracx.core.derivation import Derivation, DrvInput, Matcher
from diracx.core.matching import Candidate, Choice, choose, plan


def cand(i: int, **metrics: float) -> Candidate:
    return Candidate(f"{i:064x}", "0" * 64, {}, dict(metrics))


def test_default_matcher_hashes_as_before() -> None:
    drv = Derivation(name="a", builder={"executor": "process", "argv": ["true"]})
    assert drv.body()["matcher"] == {"kind": "only"}
    other = drv.model_copy(update={"matcher": Matcher.of("some", n=2)})
    assert other.dref != drv.dref
    assert other.body()["matcher"] == {"kind": "some", "n": 2}


@pytest.mark.parametrize(
    "doc",
    [
        {"kind": "some"},
        {"kind": "only", "n": 2},
        {"kind": "best", "n": 1, "mode": "higher"},
        {"kind": "best", "n": 1, "metric": "acc"},
        {"kind": "exact"},
        {"kind": "exact", "rrefs": ["b" * 64, "a" * 64]},
        {"kind": "latest", "n": 0},
        {"kind": "nope"},
    ],
)
def test_bad_matchers_are_refused(doc: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        Matcher.model_validate(doc)


def test_only() -> None:
    m = Matcher()
    assert choose(m, "a", []).missing == 1
    assert choose(m, "a", [cand(1)]).chosen == [cand(1)]
    error = choose(m, "a", [cand(1), cand(2)]).error
    assert error is not None and cand(1).rref in error and cand(2).rref in error


def test_latest_all_some() -> None:
    found = [cand(1), cand(2), cand(3)]
    assert choose(Matcher.of("latest", n=2), "a", found).chosen == [cand(3), cand(2)]
    assert choose(Matcher.of("all"), "a", found).chosen == found
    assert choose(Matcher.of("all"), "a", []).missing == 1
    some = choose(Matcher.of("some", n=5), "a", found)
    assert some.missing == 2 and some.chosen == found
    assert choose(Matcher.of("some", n=5), "a", []).missing == 5
    assert choose(Matcher.of("some", n=2), "a", found).missing == 0


def test_best_higher_lower_and_missing_metric() -> None:
    found = [cand(1, acc=0.5), cand(2, acc=0.9), cand(3), cand(4, acc=0.7)]
    higher = Matcher.of("best", n=2, metric="acc", mode="higher")
    assert choose(higher, "a", found).chosen == [cand(2, acc=0.9), cand(4, acc=0.7)]
    lower = Matcher.of("best", n=1, metric="acc", mode="lower")
    assert choose(lower, "a", found).chosen == [cand(1, acc=0.5)]
    assert choose(lower, "a", []).missing == 1
    error = choose(Matcher.of("best", n=1, metric="loss", mode="lower"), "a", found).error
    assert error is not None and "loss" in error


def test_exact() -> None:
    m = Matcher.of("exact", rrefs=[cand(2).rref, cand(1).rref])
    assert tuple(c.rref for c in choose(m, "a", [cand(1), cand(2)]).chosen) == m.rrefs
    error = choose(m, "a", [cand(1)]).error
    assert error is not None and cand(2).rref in error


def test_plan_reasons() -> None:
    a = Derivation(
        name="a",
        builder={"executor": "process", "argv": ["true"]},
        matcher=Matcher.of("some", n=3),
    )
    b = Derivation(
        name="b",
        builder={"executor": "process", "argv": ["true"]},
        inputs={"x": DrvInput(drv=a.dref)},
    )
    ordered = [(a.dref, a), (b.dref, b)]
    fresh = plan(ordered, {})
    assert (fresh[a.dref].reason, fresh[a.dref].builds) == ("never built", 3)
    assert fresh[b.dref].reason == "never built"
    one = [cand(1)]
    built_b = Candidate("b" * 64, "0" * 64, {"x": [cand(1).rref]})
    partial = plan(ordered, {a.dref: one, b.dref: [built_b]})
    assert partial[a.dref].reason == "matcher some(3): 1 of 3"
    assert partial[b.dref].reason == "input 'x' is rebuilt (reused if unchanged)"
    three = [cand(1), cand(2), cand(3)]
    full = plan(ordered, {a.dref: three, b.dref: [built_b]})
    assert full[a.dref].action == "reuse" and full[a.dref].reason.startswith("cached (some(3)")
    assert full[b.dref].reason == "input 'x' changed"  # built from one of them, not three
    built_b3 = Candidate("c" * 64, "0" * 64, {"x": sorted(c.rref for c in three)})
    cached = plan(ordered, {a.dref: three, b.dref: [built_b, built_b3]})
    assert cached[b.dref].reason == f"cached (RRef {'c' * 12}…)"
    forced = plan(ordered, {a.dref: three, b.dref: [built_b3]}, forced={a.dref})
    assert forced[a.dref].reason == "forced"
    assert forced[b.dref].reason == "input 'x' is rebuilt (reused if unchanged)"
    joined = plan(ordered, {}, live={a.dref: 7})
    assert joined[a.dref].action == "join" and joined[a.dref].job_id == 7


def test_best_at_least_builds_first_then_ranks() -> None:
    """best("acc", at_least=3): built until three exist (like some(3)), then only the
    most accurate is chosen; at_least=1 is the default and hashes as before."""
    m = Matcher.of("best", n=1, metric="acc", mode="higher", at_least=3)
    assert m.build_until == 3 and m.single
    assert m.describe() == "best(acc, 1, higher, at_least=3)"
    assert choose(m, "a", []).missing == 3
    two = choose(m, "a", [cand(1, acc=0.2), cand(2, acc=0.8)])
    assert two.missing == 1 and two.chosen == [cand(2, acc=0.8)]
    found = [cand(1, acc=0.2), cand(2, acc=0.8), cand(3, acc=0.5), cand(4, acc=0.9)]
    assert choose(m, "a", found) == Choice([cand(4, acc=0.9)], missing=0)
    plain = Matcher.of("best", n=1, metric="acc", mode="higher")
    assert Matcher.of("best", n=1, metric="acc", mode="higher", at_least=1) == plain
    assert "at_least" not in plain.model_dump(exclude_none=True)
    assert Matcher.of("some", n=3).build_until == 3 and Matcher().build_until == 1
    with pytest.raises(ValidationError):
        Matcher.model_validate({"kind": "some", "n": 3, "at_least": 2})

    a = Derivation(name="a", builder={"executor": "process", "argv": ["true"]}, matcher=m)
    ordered = [(a.dref, a)]
    assert plan(ordered, {a.dref: [cand(1, acc=0.1)]})[a.dref].reason == (
        "matcher best(acc, 1, higher, at_least=3): 1 of 3"
    )
    reuse = plan(ordered, {a.dref: found})[a.dref]
    assert reuse.action == "reuse" and reuse.reason == f"cached (RRef {cand(4).rref[:12]}…)"
