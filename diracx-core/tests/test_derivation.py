"""Derivations: DRefs are a Merkle DAG; plan_order checks the graph and every hash."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from typing import Any

import pytest
from pydantic import ValidationError

from diracx.core.builders import PythonBuilder, parse_builder
from diracx.core.canonical import digest_of
from diracx.core.derivation import (
    Derivation,
    DrvInput,
    PipelineSubmission,
    TreeInput,
    plan_order,
    realization_ref,
)
from diracx.core.exceptions import InvalidPipelineError, UnknownExecutorError

TREE = "7" * 64
ECHO = {"executor": "process", "argv": ["echo", "hi"]}


def drv(name: str = "stage", *, builder: dict[str, Any] | None = None, **kw: Any) -> Derivation:
    return Derivation(name=name, builder=builder or ECHO, **kw)


def submission(*drvs: Derivation, targets: list[str] | None = None) -> PipelineSubmission:
    by_key = {d.dref: d for d in drvs}
    return PipelineSubmission(derivations=by_key, targets=targets or [drvs[-1].dref])


# -- DRef -----------------------------------------------------------------------------------------


def test_dref_is_the_digest_of_the_body() -> None:
    d = drv(config={"n": 1}, inputs={"src": TreeInput(tree=TREE)})
    assert d.dref == digest_of(d.body())
    assert d.body() == {
        "name": "stage",
        "builder": {"executor": "process", "argv": ["echo", "hi"]},  # defaults left out
        "config": {"n": 1},
        "inputs": {"src": {"tree": TREE}},
        "matcher": {"kind": "only"},
    }


def test_dref_is_stable() -> None:
    a = drv(config={"x": 1, "y": [1, 2]}, inputs={"a": TreeInput(tree=TREE)})
    b = Derivation.model_validate(
        {
            "inputs": {"a": {"tree": TREE}},
            "config": {"y": [1, 2], "x": 1},
            "builder": {"argv": ["echo", "hi"], "executor": "process"},
            "name": "stage",
        }
    )
    assert a.dref == b.dref
    # a known value: changing how DRefs are computed invalidates every stored result
    assert a.dref == digest_of(
        {
            "builder": {"argv": ["echo", "hi"], "executor": "process"},
            "config": {"x": 1, "y": [1, 2]},
            "inputs": {"a": {"tree": TREE}},
            "matcher": {"kind": "only"},
            "name": "stage",
        }
    )


def test_explicit_builder_defaults_do_not_change_the_dref() -> None:
    explicit = drv(builder={**ECHO, "env": {}, "workdir": None, "timeout": None})
    assert explicit.dref == drv().dref


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(lambda: drv("stage2"), id="name"),
        pytest.param(lambda: drv(config={"n": 1}), id="config"),
        pytest.param(lambda: drv(config={"n": 1.0}), id="config-float"),
        pytest.param(lambda: drv(builder={**ECHO, "argv": ["echo", "ho"]}), id="argv"),
        pytest.param(lambda: drv(builder={**ECHO, "env": {"A": "1"}}), id="env"),
        pytest.param(lambda: drv(builder={**ECHO, "timeout": 5}), id="timeout"),
        pytest.param(lambda: drv(builder={**ECHO, "workdir": "work"}), id="workdir"),
        pytest.param(
            lambda: drv(builder={"executor": "python", "function": "m:f", "source": TREE}),
            id="executor",
        ),
        pytest.param(lambda: drv(inputs={"src": TreeInput(tree=TREE)}), id="tree-input"),
        pytest.param(lambda: drv(inputs={"src": DrvInput(drv=TREE)}), id="drv-input"),
    ],
)
def test_dref_changes_with_every_part(other: Any) -> None:
    base = drv(config={"n": 2})
    assert other().dref != base.dref
    assert other().dref != drv().dref


def test_dref_changes_with_input_name_and_target() -> None:
    a = drv(inputs={"src": TreeInput(tree=TREE)})
    assert drv(inputs={"other": TreeInput(tree=TREE)}).dref != a.dref
    assert drv(inputs={"src": TreeInput(tree="8" * 64)}).dref != a.dref
    assert drv(inputs={"src": DrvInput(drv=TREE)}).dref != a.dref  # a tree is not a derivation


def test_upstream_change_propagates_downstream() -> None:
    def chain(n: int) -> list[str]:
        a = drv("a", config={"n": n})
        b = drv("b", inputs={"x": DrvInput(drv=a.dref)})
        c = drv("c", inputs={"y": DrvInput(drv=b.dref)}, config={"k": "v"})
        return [a.dref, b.dref, c.dref]

    one, two = chain(1), chain(2)
    assert chain(1) == one
    assert all(x != y for x, y in zip(one, two, strict=True))


def test_input_order_does_not_matter() -> None:
    a = drv(inputs={"x": TreeInput(tree=TREE), "y": DrvInput(drv="8" * 64)})
    b = drv(inputs={"y": DrvInput(drv="8" * 64), "x": TreeInput(tree=TREE)})
    assert a.dref == b.dref


def test_dref_does_not_depend_on_the_interpreter() -> None:
    """No hash(), no process state: the same document hashes the same in another interpreter."""
    d = drv(config={"n": 1})
    code = (
        "from diracx.core.derivation import Derivation;"
        f"print(Derivation.model_validate_json({d.model_dump_json()!r}).dref)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert out.stdout.strip() == d.dref


# -- validation -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["", "-x", ".x", "_x", "a b", "a/b", "a\\b", "x" * 129, "café", "name\n", "a:b", "a\0"],
)
def test_bad_stage_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="stage name"):
        drv(name)


@pytest.mark.parametrize("name", ["a", "A", "0", "a.b_c-1", "x" * 128, "Build-2.tar_gz"])
def test_good_stage_names(name: str) -> None:
    assert drv(name).name == name


@pytest.mark.parametrize("name", ["", "1x", "a-b", "a b", "x\n", "x" * 65])
def test_bad_input_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError, match="input name"):
        drv(inputs={name: TreeInput(tree=TREE)})


@pytest.mark.parametrize(
    "config",
    [{"x": math.nan}, {"x": [1, {"y": math.inf}]}, {"x": -math.inf}],
)
def test_nan_in_config_is_refused(config: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="NaN"):
        drv(config=config)


def test_non_json_config_is_refused() -> None:
    with pytest.raises(ValidationError, match="plain JSON"):
        drv(config={"x": object()})


@pytest.mark.parametrize("bad", ["abc", "A" * 64, "a" * 64 + "\n"])
def test_inputs_must_be_digests(bad: str) -> None:
    with pytest.raises(ValidationError):
        DrvInput(drv=bad)
    with pytest.raises(ValidationError):
        TreeInput(tree=bad)


def test_unknown_executor_lists_the_known_ones() -> None:
    with pytest.raises(UnknownExecutorError) as info:
        parse_builder({"executor": "docker", "image": "alpine"})
    assert "'docker'" in str(info.value)
    assert "process" in str(info.value)
    assert "python" in str(info.value)
    assert isinstance(info.value, InvalidPipelineError)
    with pytest.raises(UnknownExecutorError, match="knows: alpha, beta"):
        parse_builder({"executor": "gamma"}, specs={"beta": PythonBuilder, "alpha": PythonBuilder})


def test_a_derivation_with_an_unknown_executor_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"unknown executor 'docker'.*process, python"):
        drv(builder={"executor": "docker"})


@pytest.mark.parametrize(
    ("builder", "message"),
    [
        ({"argv": ["x"]}, "executor"),
        ("process", "executor"),
        ({"executor": "process", "argv": []}, "argv"),
        ({"executor": "process", "argv": ["x"], "shell": True}, "shell"),
        ({"executor": "process", "argv": ["x"], "env": {"OUT": "/"}}, "OUT"),
        ({"executor": "process", "argv": ["x"], "env": {"IN_SRC": "/"}}, "IN_SRC"),
        ({"executor": "process", "argv": ["x"], "env": {"A\n": "1"}}, "environment variable"),
        ({"executor": "process", "argv": ["x"], "workdir": "../up"}, "workdir"),
        ({"executor": "process", "argv": ["x"], "timeout": 0}, "timeout"),
        ({"executor": "python", "function": "no_colon", "source": TREE}, "function"),
        ({"executor": "python", "function": "m:f\n", "source": TREE}, "function"),
        ({"executor": "python", "function": "m:f", "source": "not-a-digest"}, "source"),
    ],
)
def test_bad_builders_are_refused_with_the_reason(builder: Any, message: str) -> None:
    with pytest.raises(InvalidPipelineError, match=message):
        parse_builder(builder)
    with pytest.raises(ValidationError):
        drv(builder=builder)


def test_derivations_are_immutable() -> None:
    d = drv()
    with pytest.raises(ValidationError):
        d.name = "other"  # type: ignore[misc]


# -- plan_order -----------------------------------------------------------------------------------


def test_plan_order_puts_inputs_first() -> None:
    a = drv("a")
    b = drv("b", inputs={"x": DrvInput(drv=a.dref)})
    c = drv("c", inputs={"x": DrvInput(drv=a.dref), "t": TreeInput(tree=TREE)})
    d = drv("d", inputs={"b": DrvInput(drv=b.dref), "c": DrvInput(drv=c.dref)})
    sub = PipelineSubmission(
        derivations={x.dref: x for x in (d, c, b, a)},  # dependents first: order must be computed
        targets=[d.dref],
    )
    order = [name.name for _, name in plan_order(sub)]
    assert sorted(order) == ["a", "b", "c", "d"]
    position = {n: i for i, n in enumerate(order)}
    assert position["a"] < position["b"] < position["d"]
    assert position["a"] < position["c"] < position["d"]
    assert all(key == stage.dref for key, stage in plan_order(sub))


def test_plan_order_of_independent_stages() -> None:
    stages = [drv(f"s{i}") for i in range(5)]
    sub = submission(*stages, targets=[s.dref for s in stages])
    assert {k for k, _ in plan_order(sub)} == {s.dref for s in stages}


def _hand_made(name: str, **inputs: str) -> Derivation:
    return drv(name, inputs={k: DrvInput(drv=v) for k, v in inputs.items()})


def test_a_cycle_is_refused_and_named() -> None:
    ka, kb, kc = "a" * 64, "b" * 64, "c" * 64
    sub = PipelineSubmission(
        derivations={
            ka: _hand_made("first", x=kb),
            kb: _hand_made("second", y=kc),
            kc: _hand_made("third", z=ka),
        },
        targets=[ka],
    )
    with pytest.raises(InvalidPipelineError, match="cycle") as info:
        plan_order(sub)
    for name in ("first", "second", "third"):
        assert name in str(info.value)


def test_a_self_cycle_is_refused() -> None:
    key = "e" * 64
    sub = PipelineSubmission(derivations={key: _hand_made("ouroboros", me=key)}, targets=[key])
    with pytest.raises(InvalidPipelineError, match=r"cycle.*ouroboros"):
        plan_order(sub)


def test_a_cycle_behind_a_valid_prefix_is_found() -> None:
    ka, kb = "a" * 64, "b" * 64
    loop_a = _hand_made("loop-a", x=kb)
    loop_b = _hand_made("loop-b", x=ka)
    head = _hand_made("head", x=ka)
    sub = PipelineSubmission(
        derivations={head.dref: head, ka: loop_a, kb: loop_b}, targets=[head.dref]
    )
    with pytest.raises(InvalidPipelineError, match="cycle") as info:
        plan_order(sub)
    assert "loop-a" in str(info.value)
    assert "loop-b" in str(info.value)


def test_a_hash_mismatch_names_the_stage() -> None:
    a = drv("honest")
    b = drv("liar", config={"n": 1})
    wrong = drv("liar", config={"n": 2}).dref
    sub = PipelineSubmission(derivations={a.dref: a, wrong: b}, targets=[wrong])
    with pytest.raises(InvalidPipelineError, match="hash mismatch") as info:
        plan_order(sub)
    assert "'liar'" in str(info.value)
    assert b.dref in str(info.value)


def test_a_missing_input_names_the_stage_and_input() -> None:
    absent = "9" * 64
    b = _hand_made("needy", src=absent)
    with pytest.raises(InvalidPipelineError, match="not part of the pipeline") as info:
        plan_order(submission(b))
    assert "'needy'" in str(info.value)
    assert "'src'" in str(info.value)
    assert absent in str(info.value)


def test_a_target_must_be_in_the_pipeline() -> None:
    a = drv("a")
    stray = "f" * 64
    with pytest.raises(InvalidPipelineError, match=stray):
        plan_order(submission(a, targets=[a.dref, stray]))


def test_empty_submissions_are_refused() -> None:
    with pytest.raises(ValidationError):
        PipelineSubmission(derivations={}, targets=["a" * 64])
    with pytest.raises(ValidationError):
        PipelineSubmission(derivations={drv().dref: drv()}, targets=[])


def test_a_long_chain_does_not_hit_the_recursion_limit() -> None:
    start = time.monotonic()
    n = 10_000
    chain = [drv("s0")]
    for i in range(1, n):
        chain.append(drv(f"s{i}", inputs={"prev": DrvInput(drv=chain[-1].dref)}))
    assert n > sys.getrecursionlimit()
    sub = PipelineSubmission(
        derivations={d.dref: d for d in reversed(chain)},  # the DFS starts at the far end
        targets=[chain[-1].dref],
    )
    order = plan_order(sub)
    assert [d.name for _, d in order] == [f"s{i}" for i in range(n)]
    assert time.monotonic() - start < 30


# -- realizations ---------------------------------------------------------------------------------

DREF, OUT, R1, R2 = "d" * 64, "0" * 64, "1" * 64, "2" * 64


def test_realization_ref_is_deterministic() -> None:
    ref = realization_ref(DREF, {"a": [R1, R2]}, OUT)
    assert ref == realization_ref(DREF, {"a": [R1, R2]}, OUT)
    assert ref == realization_ref(DREF, {"a": [R2, R1]}, OUT)  # a set of realizations
    assert ref == digest_of({"dref": DREF, "context": {"a": [R1, R2]}, "output": OUT})


@pytest.mark.parametrize(
    ("dref", "context", "output"),
    [
        ("e" * 64, {"a": [R1, R2]}, OUT),
        (DREF, {"a": [R1]}, OUT),
        (DREF, {"b": [R1, R2]}, OUT),
        (DREF, {"a": [R1, R2], "b": []}, OUT),
        (DREF, {}, OUT),
        (DREF, {"a": [R1, R2]}, "3" * 64),
    ],
)
def test_realization_ref_depends_on_dref_context_and_output(
    dref: str, context: dict[str, list[str]], output: str
) -> None:
    assert realization_ref(dref, context, output) != realization_ref(DREF, {"a": [R1, R2]}, OUT)
