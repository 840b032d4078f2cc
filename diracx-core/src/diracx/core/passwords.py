"""Password and client-secret hashes (argon2id): what the configuration keeps instead of them.

Built-in accounts (``accounts.<name>.password_hash``) and service accounts
(``service_accounts.<client_id>.secret_hash``) hold hashes made by :func:`hash_password`
(``dirac auth hash-password`` prints one). :func:`verify_password` checks a candidate; it
takes the same time whether or not the account exists (pass ``None`` as the hash), so that
a caller cannot find out which names exist by timing the answers.
"""

from __future__ import annotations

import contextlib
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from diracx.core.exceptions import DiracxError

HASH_PREFIX = "$argon2id$"


class PasswordHashError(DiracxError):
    """A configured hash is not an argon2id hash (it says where to get a good one)."""


@cache
def _hasher() -> PasswordHasher:
    # argon2-cffi's defaults are RFC 9106's "low memory" profile (t=3, m=64 MiB, p=4), argon2id
    return PasswordHasher()


@cache
def _dummy_hash() -> str:
    """A hash of nothing anyone knows: verified against when the account does not exist."""
    return _hasher().hash("no account has this password")


def hash_password(password: str) -> str:
    """The argon2id hash of *password* (salted: two calls give different hashes)."""
    if not password:
        raise ValueError("the password is empty")
    return _hasher().hash(password)


def is_password_hash(value: str) -> bool:
    """Whether *value* looks like an argon2id hash (what the configuration must hold)."""
    return value.startswith(HASH_PREFIX)


def verify_password(password: str, password_hash: str | None) -> bool:
    """Whether *password* matches *password_hash*; ``None`` (no such account) never matches
    but costs the same time. A malformed hash raises :class:`PasswordHashError`."""
    hasher = _hasher()
    if password_hash is None:
        with contextlib.suppress(VerificationError):
            hasher.verify(_dummy_hash(), password)
        return False
    if not is_password_hash(password_hash):
        raise PasswordHashError(
            "the configured hash is not an argon2id hash: make one with `dirac auth hash-password`"
        )
    try:
        return hasher.verify(password_hash, password)
    except VerifyMismatchError:
        return False
    except (InvalidHashError, VerificationError):
        raise PasswordHashError(
            "the configured hash is not a valid argon2id hash: make one with "
            "`dirac auth hash-password`"
        ) from None
