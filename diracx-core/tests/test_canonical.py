"""Canonical JSON: the one way DiracX turns data into identities."""

from __future__ import annotations

import hashlib
import json
import math

import pytest

from diracx.core.canonical import canonical_json, check_is_digest, digest_of, is_digest, sha256_hex


def test_keys_are_sorted_at_every_depth() -> None:
    doc = {"b": 1, "a": {"z": [3, {"y": 1, "x": 2}], "c": None}}
    assert canonical_json(doc) == b'{"a":{"c":null,"z":[3,{"x":2,"y":1}]},"b":1}'


def test_key_order_of_the_input_does_not_matter() -> None:
    one = {"name": "a", "config": {"x": 1, "y": 2}}
    other = {"config": {"y": 2, "x": 1}, "name": "a"}
    assert canonical_json(one) == canonical_json(other)
    assert digest_of(one) == digest_of(other)


def test_list_order_matters() -> None:
    assert canonical_json([1, 2]) != canonical_json([2, 1])


def test_no_insignificant_whitespace() -> None:
    out = canonical_json({"a": [1, 2, {"b": "c d"}], "e": True})
    assert out == b'{"a":[1,2,{"b":"c d"}],"e":true}'
    assert b" " not in out.replace(b'"c d"', b"")
    assert b"\n" not in out


def test_utf8_not_ascii_escapes() -> None:
    out = canonical_json({"name": "café ☃ 日本"})
    assert out == '{"name":"café ☃ 日本"}'.encode()
    assert b"\\u" not in out
    assert json.loads(out.decode("utf-8")) == {"name": "café ☃ 日本"}


def test_control_characters_are_escaped() -> None:
    assert canonical_json("a\nb\x00") == b'"a\\nb\\u0000"'


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_refused(bad: float) -> None:
    with pytest.raises(ValueError):
        canonical_json({"x": bad})
    with pytest.raises(ValueError):
        canonical_json({"deep": [1, {"x": bad}]})
    with pytest.raises(ValueError):
        digest_of([bad])


def test_non_json_objects_are_refused() -> None:
    with pytest.raises(TypeError):
        canonical_json({"x": object()})
    with pytest.raises(TypeError):
        canonical_json({"x": {1, 2}})


def test_digest_is_sha256_of_canonical_json() -> None:
    doc = {"b": [1, 2.5, "x"], "a": None}
    assert digest_of(doc) == hashlib.sha256(b'{"a":null,"b":[1,2.5,"x"]}').hexdigest()
    assert sha256_hex(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert is_digest(digest_of(doc))


def test_int_and_float_are_different_values() -> None:
    assert canonical_json(1) == b"1"
    assert canonical_json(1.0) == b"1.0"
    assert digest_of({"x": 1}) != digest_of({"x": 1.0})


@pytest.mark.parametrize(
    "value",
    [
        "",
        "a" * 63,
        "a" * 65,
        "A" * 64,  # uppercase is not the canonical form
        "g" * 64,
        "a" * 64 + "\n",  # a trailing newline must not sneak through
        "\n" + "a" * 64,
        " " + "a" * 63,
        "../" + "a" * 61,
    ],
)
def test_malformed_digests_are_refused(value: str) -> None:
    assert not is_digest(value)
    with pytest.raises(ValueError, match="the thing"):
        check_is_digest(value, what="the thing")


def test_check_is_digest_returns_a_good_digest() -> None:
    d = "0123456789abcdef" * 4
    assert check_is_digest(d) == d
    assert is_digest(d)


def test_check_is_digest_refuses_non_strings() -> None:
    with pytest.raises(ValueError):
        check_is_digest(None)  # type: ignore[arg-type]
