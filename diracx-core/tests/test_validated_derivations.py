"""A submission's derivations validated before are reused, by their exact document."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from diracx.core.derivation import (
    VALIDATED,
    Derivation,
    PipelineSubmission,
    ValidatedDerivations,
    plan_order,
)
from diracx.core.exceptions import InvalidPipelineError

ECHO = {"executor": "process", "argv": ["echo", "hi"]}


@pytest.fixture(autouse=True)
def empty_cache() -> None:
    VALIDATED.clear()


def doc(name: str = "stage", **fields: Any) -> dict[str, Any]:
    return {"name": name, "builder": ECHO, **fields}


def parse(*docs: dict[str, Any], keys: list[str] | None = None) -> PipelineSubmission:
    drefs = keys or [Derivation.model_validate(d).dref for d in docs]
    body = {"derivations": dict(zip(drefs, docs, strict=True)), "targets": drefs[-1:]}
    return PipelineSubmission.model_validate(json.loads(json.dumps(body)))


def test_the_same_documents_give_the_very_same_derivations() -> None:
    first = parse(doc("a"), doc("b", config={"n": 1}))
    again = parse(doc("a"), doc("b", config={"n": 1}))
    assert list(first.derivations) == list(again.derivations)
    for dref, drv in again.derivations.items():
        assert drv is first.derivations[dref]
        assert drv.dref == dref
    assert [d for d, _ in plan_order(again)] == [d for d, _ in plan_order(first)]


def test_a_document_is_matched_with_its_types() -> None:
    # 1, 1.0 and true are equal in Python, not in JSON: three derivations, three DRefs
    drefs = set()
    for value in (1, 1.0, True):
        [(dref, drv)] = parse(doc(config={"x": value})).derivations.items()
        assert type(drv.config["x"]) is type(value)
        drefs.add(dref)
    assert len(drefs) == 3


def test_a_wrong_dref_is_still_refused() -> None:
    right = parse(doc("a", config={"x": 1}))
    [claimed] = right.derivations
    # the same name, another content, under the DRef seen before
    lying = parse(doc("a", config={"x": 1.0}), keys=[claimed])
    with pytest.raises(InvalidPipelineError, match="hash mismatch"):
        plan_order(lying)


def test_an_invalid_document_is_refused_every_time() -> None:
    bad = doc("a", inputs={"not an identifier": {"drv": "0" * 64}})
    for _ in range(2):
        with pytest.raises(ValidationError) as info:
            parse(bad, keys=["0" * 64])
        assert info.value.errors()[0]["loc"][:2] == ("derivations", "0" * 64)


def test_known_and_new_derivations_mix_in_their_order() -> None:
    known = parse(doc("a"))
    mixed = parse(doc("b"), doc("a"), doc("c"))
    names = [d.name for d in mixed.derivations.values()]
    assert names == ["b", "a", "c"]
    [a] = known.derivations.values()
    assert mixed.derivations[a.dref] is a


def test_models_given_from_python_are_kept() -> None:
    drv = Derivation(name="a", builder=ECHO)
    sub = PipelineSubmission(derivations={drv.dref: drv}, targets=[drv.dref])
    assert sub.derivations[drv.dref] is drv


def test_the_cache_is_bounded() -> None:
    cache = ValidatedDerivations(2)
    drvs = [Derivation(name=f"s{i}", builder=ECHO) for i in range(3)]
    for i, drv in enumerate(drvs):
        key = cache.key(doc(f"s{i}"))
        assert key is not None
        cache.put({key: drv})
    assert cache.get(cache.key(doc("s0")) or b"") is None
    assert cache.get(cache.key(doc("s2")) or b"") is drvs[2]
    assert cache.key(["not", "a", "document"]) is None
