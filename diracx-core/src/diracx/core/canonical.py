"""Canonical JSON and SHA-256: the one way DiracX turns data into identities."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

# \Z, not $: "$" also matches before a trailing newline
DIGEST_RE = re.compile(r"^[0-9a-f]{64}\Z")


def canonical_json(obj: Any) -> bytes:
    """Serialize *obj* as canonical JSON: sorted keys, no insignificant whitespace, UTF-8.

    NaN and infinities are refused: they have no JSON form and would make
    two equal configurations hash differently.
    """
    return json.dumps(
        obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def digest_of(obj: Any) -> str:
    """The SHA-256 of the canonical JSON of *obj*."""
    return sha256_hex(canonical_json(obj))


def is_digest(value: str) -> bool:
    return isinstance(value, str) and bool(DIGEST_RE.match(value))


def check_is_digest(value: str, *, what: str = "digest") -> str:
    """Return *value* if it is a SHA-256 hex digest, else raise ValueError naming *what*."""
    if not isinstance(value, str) or not DIGEST_RE.match(value):
        raise ValueError(
            f"{what} is not a SHA-256 digest: {value!r} (expected 64 lowercase hex digits)"
        )
    return value
