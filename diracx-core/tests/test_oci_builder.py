"""The ``oci`` builder spec: validation, and what is (not) part of the DRef."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest
from pydantic import ValidationError

from diracx.core.builders import OciBuilder, parse_builder, unhashed_fields
from diracx.core.derivation import Derivation, PipelineSubmission
from diracx.core.exceptions import InvalidPipelineError
from diracx.core.secrets import Masker, SecretBox, SecretsError, mask_text, new_key

LAYER = hashlib.sha256(b"a layer tree").hexdigest()


def step(**builder: Any) -> Derivation:
    return Derivation(
        name="exec-sh",
        builder={"executor": "oci", "layers": ["layer_0"], "argv": ["sh"], **builder},
        inputs={"layer_0": {"tree": LAYER}},
    )


def test_registered_and_parsed() -> None:
    spec = parse_builder({"executor": "oci", "argv": ["true"], "workdir": "/a/./b//c"})
    assert isinstance(spec, OciBuilder) and spec.workdir == "/a/b/c"


@pytest.mark.parametrize(
    ("builder", "message"),
    [
        ({"argv": []}, "argv"),
        ({"argv": ["x"], "workdir": "relative"}, "absolute path"),
        ({"argv": ["x"], "workdir": "/a/../b"}, "'..'"),
        ({"argv": ["x"], "expect": "maybe"}, "expect"),
        ({"argv": ["x"], "caches": [{"path": "/c", "name": "bad name"}]}, "cache volume name"),
        ({"argv": ["x"], "secrets": [{"env": "1X", "secret": "s"}]}, "environment variable"),
        ({"argv": ["x"], "extract": {"path": "/x"}}, "not both"),
        ({}, "argv, copies or extract"),
        ({"copies": [{"path": "/x", "input": "i"}], "stdin": "x"}, "need argv"),
        ({"argv": ["x"], "memory_mb": 1}, "memory_mb"),
        ({"argv": ["x"], "user": "a:b:c"}, "user"),
        ({"argv": ["x"], "env": {"A=B": "x"}}, "invalid environment variable"),
    ],
)
def test_bad_builders_say_what_is_wrong(builder: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidPipelineError, match=message):
        parse_builder({"executor": "oci", **builder})


def test_inputs_named_by_the_builder_must_exist() -> None:
    with pytest.raises(ValidationError, match=r"not given: \['layer_1'\]"):
        Derivation(
            name="x",
            builder={"executor": "oci", "layers": ["layer_1"], "argv": ["true"]},
        )


def test_everything_that_changes_the_result_is_in_the_dref() -> None:
    base = step()
    for change in (
        {"argv": ["sh", "-c", "x"]},
        {"env": {"A": "1"}},
        {"workdir": "/w"},
        {"user": "1000"},
        {"expect": "any"},
        {"stdin": "in"},
        {"network": True},
        {"memory_mb": 64},
        {"timeout": 10},
    ):
        assert step(**change).dref != base.dref, change


def test_caches_and_secrets_never_enter_the_dref() -> None:
    plain = step()
    decorated = step(
        caches=[{"path": "/root/.cache", "name": "pip", "sharing": "locked"}],
        secrets=[{"env": "TOKEN", "secret": "token"}],
    )
    assert decorated.dref == plain.dref
    assert "caches" not in decorated.body()["builder"]
    assert unhashed_fields(decorated.builder_spec()) == {
        "caches": [{"path": "/root/.cache", "name": "pip", "sharing": "locked"}],
        "secrets": [{"env": "TOKEN", "secret": "token"}],
    }
    assert decorated.builder_spec().secret_names() == {"token"}
    assert unhashed_fields(plain.builder_spec()) == {}


def test_a_submission_carries_secret_values_that_never_print() -> None:
    d = step()
    sub = PipelineSubmission(
        derivations={d.dref: d}, targets=[d.dref], secrets={"token": "hunter2"}
    )
    assert "hunter2" not in repr(sub) and "hunter2" not in sub.model_dump_json()
    assert sub.secrets["token"].get_secret_value() == "hunter2"
    with pytest.raises(ValidationError, match="secret name"):
        PipelineSubmission(derivations={d.dref: d}, targets=[d.dref], secrets={"a b": "x"})


# -- sealing and masking ------------------------------------------------------------------


def test_secret_box_round_trip_and_wrong_key() -> None:
    key = new_key()
    sealed = SecretBox(key).seal({"token": "hunter2"})
    assert "hunter2" not in sealed
    assert SecretBox(key).open(sealed) == {"token": "hunter2"}
    with pytest.raises(SecretsError, match="not the service's"):
        SecretBox(new_key()).open(sealed)
    with pytest.raises(SecretsError, match="not a valid key"):
        SecretBox("short")


def test_masker_masks_values_cut_anywhere() -> None:
    secret, other = "s3cr3t-VALUE", "VALUE"
    text = f"abc {secret} x s3c {secret}{secret} end s3cr".encode()
    expected = mask_text(text.decode(), [secret, other]).encode()
    assert secret.encode() not in expected and expected.count(b"***") == 3
    rng = random.Random(7)
    for _ in range(500):
        cuts = sorted(rng.sample(range(1, len(text)), rng.randint(0, 8)))
        pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        masker = Masker([secret, other])
        assert b"".join(masker.feed(p) for p in pieces) + masker.flush() == expected


def test_masker_holds_back_only_what_may_be_a_secret() -> None:
    masker = Masker(["topsecret"])
    assert masker.feed(b"line one\n") == b"line one\n"  # nothing held: written in order
    assert masker.feed(b"to") == b""  # may be the start of the secret
    assert masker.feed(b"psecret!") == b"***!"
    assert Masker([]).feed(b"x") == b"x"
