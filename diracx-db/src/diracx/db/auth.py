"""AuthDB: the rows behind DiracX's own tokens (signing keys, token families, refresh tokens).

- ``signing_keys``: the keys that sign access tokens; the private key is stored sealed
  (the caller seals it with ``DIRACX_SECRET_KEY``), the public one as a JWK. The newest
  signs; older ones still verify until they are retired.
- ``token_families``: one login (or one client-credentials grant). Revoking the family
  refuses its refresh tokens and, through the ``fam`` claim, its access tokens.
- ``refresh_tokens``: only the SHA-256 of each token. A token is used once: rotating it
  marks it ``rotated`` and stores its successor; presenting a rotated one again means it
  leaked, and revokes the whole family (RFC 6819 section 5.2.2.3, OAuth 2.1).

Built on the same ``Engines`` as PipelineDB (each method is one transaction).
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, exists, insert, select, update

from diracx.db.engine import Engines
from diracx.db.schema import refresh_tokens, signing_keys, token_families


def token_hash(token: str) -> str:
    """What the database keeps of a refresh token: its SHA-256, in hex."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class SigningKeyRecord:
    kid: str
    algorithm: str
    sealed_private_key: str  # PEM sealed with DIRACX_SECRET_KEY (diracx.core.secrets)
    public_jwk: dict[str, Any]
    created: datetime
    retired: datetime | None = None


@dataclass(frozen=True)
class TokenFamily:
    id: str
    sub: str
    preferred_username: str
    vo: str
    group: str
    client_id: str
    created: datetime
    revoked: datetime | None = None
    revoked_reason: str | None = None


class Rotation(enum.Enum):
    """What happened to a refresh token presented for rotation."""

    ROTATED = "rotated"  # its successor is stored
    UNKNOWN = "unknown"  # never issued (or purged long after it expired)
    EXPIRED = "expired"
    REVOKED = "revoked"  # its family was revoked before
    REUSED = "reused"  # it had been rotated already: the family is revoked now


def _key(row: Any) -> SigningKeyRecord:
    return SigningKeyRecord(
        kid=row.kid,
        algorithm=row.algorithm,
        sealed_private_key=row.private_key,
        public_jwk=json.loads(row.public_jwk),
        created=row.created,
        retired=row.retired,
    )


def _family(row: Any) -> TokenFamily:
    return TokenFamily(
        id=row.id,
        sub=row.sub,
        preferred_username=row.preferred_username,
        vo=row.vo,
        group=row.group,
        client_id=row.client_id,
        created=row.created,
        revoked=row.revoked,
        revoked_reason=row.revoked_reason,
    )


def _revoke(conn: Connection, family_id: str, reason: str, when: datetime) -> bool:
    done = conn.execute(
        update(token_families)
        .where(token_families.c.id == family_id, token_families.c.revoked.is_(None))
        .values(revoked=when, revoked_reason=reason[:255])
    )
    return done.rowcount > 0


class AuthDB:
    """Signing keys, token families and refresh tokens."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    # -- signing keys --------------------------------------------------------------

    async def add_signing_key(self, key: SigningKeyRecord) -> None:
        def tx(conn: Connection) -> None:
            conn.execute(
                insert(signing_keys).values(
                    kid=key.kid,
                    algorithm=key.algorithm,
                    private_key=key.sealed_private_key,
                    public_jwk=json.dumps(key.public_jwk, sort_keys=True),
                    created=key.created,
                    retired=key.retired,
                )
            )

        await self.engines.write(tx)

    async def signing_keys(self, *, include_retired: bool = False) -> list[SigningKeyRecord]:
        """The keys, oldest first (the last one is the newest: it signs)."""

        def tx(conn: Connection) -> list[SigningKeyRecord]:
            query = select(signing_keys).order_by(signing_keys.c.created, signing_keys.c.kid)
            if not include_retired:
                query = query.where(signing_keys.c.retired.is_(None))
            return [_key(r) for r in conn.execute(query)]

        return await self.engines.read(tx)

    async def retire_signing_keys(self, kids: Sequence[str], when: datetime) -> int:
        """Stop publishing *kids* (the tokens they signed must have expired)."""
        if not kids:
            return 0

        def tx(conn: Connection) -> int:
            done = conn.execute(
                update(signing_keys)
                .where(signing_keys.c.kid.in_(list(kids)), signing_keys.c.retired.is_(None))
                .values(retired=when)
            )
            return done.rowcount

        return await self.engines.write(tx)

    # -- token families and refresh tokens ------------------------------------------

    async def create_family(
        self,
        family: TokenFamily,
        refresh_hash: str | None = None,
        refresh_expires: datetime | None = None,
    ) -> None:
        """Store a new family, and its first refresh token if there is one."""

        def tx(conn: Connection) -> None:
            conn.execute(
                insert(token_families).values(
                    id=family.id,
                    sub=family.sub,
                    preferred_username=family.preferred_username,
                    vo=family.vo,
                    group=family.group,
                    client_id=family.client_id,
                    created=family.created,
                )
            )
            if refresh_hash is not None:
                conn.execute(
                    insert(refresh_tokens).values(
                        token_hash=refresh_hash,
                        family_id=family.id,
                        issued=family.created,
                        expires=refresh_expires,
                    )
                )

        await self.engines.write(tx)

    async def get_family(self, family_id: str) -> TokenFamily | None:
        def tx(conn: Connection) -> TokenFamily | None:
            row = conn.execute(
                select(token_families).where(token_families.c.id == family_id)
            ).one_or_none()
            return _family(row) if row is not None else None

        return await self.engines.read(tx)

    async def rotate_refresh_token(
        self, old_hash: str, new_hash: str, now: datetime, expires: datetime
    ) -> tuple[Rotation, TokenFamily | None]:
        """Use the refresh token *old_hash* once: store *new_hash* as its successor.

        A token rotated before (or by a concurrent request) revokes its family, and that
        revocation is committed even though the caller then refuses the request.
        """

        def tx(conn: Connection) -> tuple[Rotation, TokenFamily | None]:
            row = conn.execute(
                select(refresh_tokens.c.expires, refresh_tokens.c.rotated, token_families)
                .join(token_families, token_families.c.id == refresh_tokens.c.family_id)
                .where(refresh_tokens.c.token_hash == old_hash)
            ).one_or_none()
            if row is None:
                return Rotation.UNKNOWN, None
            family = _family(row)
            if family.revoked is not None:
                return Rotation.REVOKED, family
            if row.rotated is not None:
                _revoke(conn, family.id, "a rotated refresh token was used again", now)
                return Rotation.REUSED, family
            if row.expires <= now:
                return Rotation.EXPIRED, family
            # the condition makes two concurrent uses of one token a reuse, on every backend
            used = conn.execute(
                update(refresh_tokens)
                .where(refresh_tokens.c.token_hash == old_hash, refresh_tokens.c.rotated.is_(None))
                .values(rotated=now)
            )
            if used.rowcount == 0:
                _revoke(conn, family.id, "a rotated refresh token was used again", now)
                return Rotation.REUSED, family
            conn.execute(
                insert(refresh_tokens).values(
                    token_hash=new_hash, family_id=family.id, issued=now, expires=expires
                )
            )
            return Rotation.ROTATED, family

        return await self.engines.write(tx)

    async def family_of_refresh_token(self, hash_: str) -> str | None:
        def tx(conn: Connection) -> str | None:
            found: str | None = conn.execute(
                select(refresh_tokens.c.family_id).where(refresh_tokens.c.token_hash == hash_)
            ).scalar_one_or_none()
            return found

        return await self.engines.read(tx)

    async def revoke_family(self, family_id: str, reason: str, when: datetime) -> bool:
        """Revoke a family (logout); False if it was revoked already or does not exist."""
        return await self.engines.write(_revoke, family_id, reason, when)

    async def revoked_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """The families revoked at *since* or later, with the time of their revocation."""

        def tx(conn: Connection) -> list[tuple[str, datetime]]:
            rows = conn.execute(
                select(token_families.c.id, token_families.c.revoked).where(
                    token_families.c.revoked >= since
                )
            )
            return [(r.id, r.revoked) for r in rows]

        return await self.engines.read(tx)

    async def purge(self, refresh_expired_before: datetime, families_before: datetime) -> int:
        """Delete refresh tokens expired before *refresh_expired_before*, then the families
        created before *families_before* that have no refresh token left (their access
        tokens have expired by then). Returns the number of rows deleted."""

        def tx(conn: Connection) -> int:
            tokens = conn.execute(
                delete(refresh_tokens).where(refresh_tokens.c.expires < refresh_expired_before)
            ).rowcount
            orphans = conn.execute(
                delete(token_families).where(
                    and_(
                        token_families.c.created < families_before,
                        ~exists().where(refresh_tokens.c.family_id == token_families.c.id),
                    )
                )
            ).rowcount
            return tokens + orphans

        return await self.engines.write(tx)
