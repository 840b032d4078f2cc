"""The keys that sign access tokens: made, sealed, opened, published and retired.

Keys are Ed25519 (JWS ``EdDSA``): small, and fast to verify. Their private half is
stored in the database sealed with ``DIRACX_SECRET_KEY`` (every replica needs the same
one), their public half as a JWK, published at ``/.well-known/jwks.json``.

Rotation (``dirac auth rotate-key``) adds a key; the newest key signs from then on, on
every replica once it has reloaded its keys. An older key keeps verifying until every
token it may have signed has expired; then it is retired (no longer published).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from diracx.core.exceptions import DiracxError
from diracx.core.secrets import SecretBox, SecretsError
from diracx.db.auth import AuthDB, SigningKeyRecord

ALGORITHM = "EdDSA"
# How long a replica may keep signing with a key after a newer one appeared: its key
# reload interval, plus clock skew between machines.
RETIRE_MARGIN = timedelta(minutes=2)


class SigningKeyError(DiracxError):
    """A signing key cannot be made or opened (no DIRACX_SECRET_KEY, or not the right one)."""


@dataclass(frozen=True)
class VerificationKey:
    """A published key: what verifies the tokens whose header names its ``kid``."""

    kid: str
    algorithm: str
    public_key: Ed25519PublicKey
    jwk: dict[str, Any]  # public only
    created: datetime


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 thumbprint of an OKP key (what we use as its ``kid``)."""
    canonical = json.dumps(
        {k: jwk[k] for k in ("crv", "kty", "x")}, separators=(",", ":"), sort_keys=True
    )
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def new_signing_key(box: SecretBox, now: datetime) -> SigningKeyRecord:
    """A fresh Ed25519 key, its private half sealed with *box*."""
    private = Ed25519PrivateKey.generate()
    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    kid = thumbprint(jwk)
    jwk |= {"kid": kid, "alg": ALGORITHM, "use": "sig"}
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return SigningKeyRecord(
        kid=kid,
        algorithm=ALGORITHM,
        sealed_private_key=box.seal({"pem": pem}),
        public_jwk=jwk,
        created=now,
    )


def open_private_key(record: SigningKeyRecord, box: SecretBox) -> Ed25519PrivateKey:
    try:
        pem = box.open(record.sealed_private_key)["pem"]
    except (SecretsError, KeyError):
        raise SigningKeyError(
            f"the signing key {record.kid} cannot be decrypted with this DIRACX_SECRET_KEY: "
            "every replica of the service needs the key the signing keys were sealed with"
        ) from None
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"the signing key {record.kid} is not an Ed25519 key")
    return key


def verification_key(record: SigningKeyRecord) -> VerificationKey | None:
    """The public key of *record*; None for an algorithm this version does not know."""
    if record.algorithm != ALGORITHM:
        return None
    key = OKPAlgorithm.from_jwk(record.public_jwk)
    if not isinstance(key, Ed25519PublicKey):
        return None
    return VerificationKey(
        kid=record.kid,
        algorithm=record.algorithm,
        public_key=key,
        jwk=dict(record.public_jwk),
        created=record.created,
    )


def keys_to_retire(
    records: list[SigningKeyRecord], now: datetime, access_token_lifetime: int
) -> list[str]:
    """The live keys every token of which has expired: a key stops signing when the next
    one appears, so its last token expires an access token lifetime (plus a margin) later."""
    live = sorted((r for r in records if r.retired is None), key=lambda r: (r.created, r.kid))
    lifetime = timedelta(seconds=access_token_lifetime)
    return [
        older.kid
        for older, newer in itertools.pairwise(live)
        if newer.created + lifetime + RETIRE_MARGIN < now
    ]


async def rotate_signing_key(
    db: AuthDB, box: SecretBox, now: datetime, access_token_lifetime: int
) -> tuple[SigningKeyRecord, list[str]]:
    """Add a key that signs from now on; retire the keys whose tokens have all expired.

    Returns the new key and the kids retired.
    """
    record = new_signing_key(box, now)
    await db.add_signing_key(record)
    retired = keys_to_retire(await db.signing_keys(), now, access_token_lifetime)
    await db.retire_signing_keys(retired, now)
    return record, retired
