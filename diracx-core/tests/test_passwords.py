"""argon2id hashes of built-in account passwords and service-account secrets."""

from __future__ import annotations

import pytest

from diracx.core.passwords import (
    PasswordHashError,
    hash_password,
    is_password_hash,
    verify_password,
)


def test_hash_and_verify() -> None:
    hashed = hash_password("correct horse battery staple")
    assert hashed.startswith("$argon2id$") and is_password_hash(hashed)
    assert hashed != hash_password("correct horse battery staple")  # salted
    assert verify_password("correct horse battery staple", hashed)
    assert not verify_password("correct horse battery stapl", hashed)
    assert not verify_password("", hashed)


def test_no_account_never_matches() -> None:
    assert not verify_password("anything", None)


def test_a_bad_configured_hash_says_how_to_make_one() -> None:
    with pytest.raises(PasswordHashError, match="dirac auth hash-password"):
        verify_password("x", "plain-text-password")
    with pytest.raises(PasswordHashError, match="not a valid argon2id hash"):
        verify_password("x", "$argon2id$garbage")
    with pytest.raises(ValueError, match="empty"):
        hash_password("")
