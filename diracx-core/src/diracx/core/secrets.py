"""Secrets of container steps: encrypted at rest, masked in every output.

A secret's value never enters a derivation, a hash, the store or a log. The client
sends it with the pipeline (over the authenticated connection); the service keeps
it encrypted with ``DIRACX_SECRET_KEY`` (Fernet: AES-128-CBC with HMAC-SHA256) in
the ``job_secrets`` table until the job ends; the worker decrypts it when it has
claimed the job and hands it to the build out of band (the environment of the
sandbox). Whatever the build prints is masked (each value replaced by ``***``)
before it is written anywhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping

from diracx.core.exceptions import DiracxError

MASK = b"***"


class SecretsError(DiracxError):
    """Secrets cannot be encrypted or decrypted (no key, or not the key they were sealed with)."""


def new_key() -> str:
    """A fresh key for ``DIRACX_SECRET_KEY`` (url-safe base64 of 32 random bytes)."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


class SecretBox:
    """Seals and opens a mapping of secret names to values with one key."""

    def __init__(self, key: str) -> None:
        from cryptography.fernet import Fernet

        try:
            self._fernet = Fernet(key.encode())
        except (ValueError, TypeError):
            raise SecretsError(
                "DIRACX_SECRET_KEY is not a valid key (32 url-safe base64-encoded bytes; "
                "make one with: python -c 'from diracx.core.secrets import new_key; "
                "print(new_key())')"
            ) from None

    def seal(self, values: Mapping[str, str]) -> str:
        return self._fernet.encrypt(json.dumps(dict(values)).encode()).decode()

    def open(self, token: str) -> dict[str, str]:
        from cryptography.fernet import InvalidToken

        try:
            values = json.loads(self._fernet.decrypt(token.encode()))
        except (InvalidToken, ValueError):
            raise SecretsError(
                "the job's secrets cannot be decrypted: this worker's DIRACX_SECRET_KEY is "
                "not the service's"
            ) from None
        if not isinstance(values, dict):
            raise SecretsError("the job's secrets are malformed")
        return {str(k): str(v) for k, v in values.items()}


class Masker:
    """Replaces every secret value by ``***`` in a stream of bytes cut anywhere.

    ``feed`` returns what can be written now; it holds back the last bytes that may
    be the start of a value cut by the chunking, and ``flush`` returns them at the end.
    """

    def __init__(self, values: Iterable[str]) -> None:
        # longest first: a value that contains another is masked whole
        self.values = sorted({v.encode() for v in values if v}, key=len, reverse=True)
        self.keep = max((len(v) for v in self.values), default=1) - 1
        self._pending = b""

    def feed(self, data: bytes) -> bytes:
        if not self.values:
            return data
        masked = self._mask(self._pending + data)
        # Hold back the longest tail that is the start of a value: the next chunk may
        # complete it. Only that: the rest is written at once, in order with the other stream.
        hold = 0
        for n in range(min(self.keep, len(masked)), 0, -1):
            tail = masked[-n:]
            if any(v.startswith(tail) for v in self.values):
                hold = n
                break
        if hold:
            self._pending = masked[-hold:]
            return masked[:-hold]
        self._pending = b""
        return masked

    def flush(self) -> bytes:
        rest, self._pending = self._mask(self._pending), b""
        return rest

    def _mask(self, data: bytes) -> bytes:
        out = data
        for value in self.values:
            if value in out:
                out = out.replace(value, MASK)
        return out


def mask_text(text: str, values: Iterable[str]) -> str:
    """*text* with every value replaced by ``***``."""
    for value in sorted({v for v in values if v}, key=len, reverse=True):
        text = text.replace(value, MASK.decode())
    return text
