"""AuthDB on SQLite and PostgreSQL: signing keys, token families, refresh token rotation
(used once; reuse revokes the family), revocation feed and purge."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from diracx.db.auth import AuthDB, Rotation, SigningKeyRecord, TokenFamily, token_hash
from diracx.db.engine import Engines
from diracx.db.migrate import upgrade

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[AuthDB]:
    upgrade(db_url)
    engines = Engines(db_url)
    yield AuthDB(engines)
    await engines.dispose()


def family(fid: str = "fam-1", created: datetime = T0) -> TokenFamily:
    return TokenFamily(
        id=fid,
        sub="alice",
        preferred_username="Alice",
        vo="lhcb",
        group="lhcb_user",
        client_id="dirac-cli",
        created=created,
    )


def key(kid: str, created: datetime) -> SigningKeyRecord:
    jwk = {"kty": "OKP", "crv": "Ed25519", "x": kid, "kid": kid}
    return SigningKeyRecord(
        kid=kid, algorithm="EdDSA", sealed_private_key="sealed", public_jwk=jwk, created=created
    )


async def test_signing_keys_oldest_first_and_retired(db: AuthDB) -> None:
    await db.add_signing_key(key("b", T0 + timedelta(hours=1)))
    await db.add_signing_key(key("a", T0))
    assert [k.kid for k in await db.signing_keys()] == ["a", "b"]
    first = (await db.signing_keys())[0]
    assert first.public_jwk["kid"] == "a" and first.created == T0
    assert await db.retire_signing_keys(["a"], T0 + timedelta(hours=2)) == 1
    assert await db.retire_signing_keys(["a"], T0 + timedelta(hours=3)) == 0  # once
    assert [k.kid for k in await db.signing_keys()] == ["b"]
    everything = await db.signing_keys(include_retired=True)
    assert [(k.kid, k.retired) for k in everything] == [
        ("a", T0 + timedelta(hours=2)),
        ("b", None),
    ]


async def test_refresh_token_rotates_once_and_reuse_revokes_the_family(db: AuthDB) -> None:
    expires = T0 + timedelta(days=7)
    await db.create_family(family(), token_hash("r1"), expires)
    assert await db.family_of_refresh_token(token_hash("r1")) == "fam-1"

    outcome, fam = await db.rotate_refresh_token(token_hash("r1"), token_hash("r2"), T0, expires)
    assert outcome is Rotation.ROTATED and fam is not None and fam.sub == "alice"
    # r2 is the live one; r1 presented again means it leaked
    outcome, _ = await db.rotate_refresh_token(token_hash("r1"), token_hash("r3"), T0, expires)
    assert outcome is Rotation.REUSED
    got = await db.get_family("fam-1")
    assert got is not None and got.revoked == T0
    assert got.revoked_reason == "a rotated refresh token was used again"
    # and the live one dies with its family
    outcome, _ = await db.rotate_refresh_token(token_hash("r2"), token_hash("r4"), T0, expires)
    assert outcome is Rotation.REVOKED
    assert await db.family_of_refresh_token(token_hash("r3")) is None  # never stored


async def test_unknown_and_expired_refresh_tokens(db: AuthDB) -> None:
    await db.create_family(family(), token_hash("r1"), T0 + timedelta(hours=1))
    outcome, fam = await db.rotate_refresh_token(token_hash("nope"), token_hash("x"), T0, T0)
    assert (outcome, fam) == (Rotation.UNKNOWN, None)
    later = T0 + timedelta(hours=2)
    outcome, _ = await db.rotate_refresh_token(token_hash("r1"), token_hash("r2"), later, later)
    assert outcome is Rotation.EXPIRED


async def test_concurrent_uses_of_one_token_rotate_it_once(db: AuthDB) -> None:
    expires = T0 + timedelta(days=1)
    await db.create_family(family(), token_hash("r1"), expires)
    outcomes = await asyncio.gather(
        *(
            db.rotate_refresh_token(token_hash("r1"), token_hash(f"next-{i}"), T0, expires)
            for i in range(4)
        )
    )
    kinds = sorted(o.value for o, _ in outcomes)
    assert kinds.count("rotated") == 1
    assert set(kinds) - {"rotated"} <= {"reused", "revoked"}
    got = await db.get_family("fam-1")
    assert got is not None and got.revoked is not None


async def test_revocations_since_and_logout(db: AuthDB) -> None:
    await db.create_family(family("f1"))
    await db.create_family(family("f2"))
    assert await db.revoke_family("f1", "logout", T0 + timedelta(minutes=1))
    assert not await db.revoke_family("f1", "again", T0 + timedelta(minutes=2))
    assert not await db.revoke_family("missing", "logout", T0)
    assert await db.revoked_since(T0) == [("f1", T0 + timedelta(minutes=1))]
    assert await db.revoked_since(T0 + timedelta(minutes=5)) == []


async def test_purge_drops_expired_tokens_then_their_families(db: AuthDB) -> None:
    await db.create_family(family("old"), token_hash("old-r"), T0 + timedelta(hours=1))
    await db.create_family(family("live"), token_hash("live-r"), T0 + timedelta(days=7))
    await db.create_family(family("cc", T0))  # client credentials: no refresh token
    removed = await db.purge(T0 + timedelta(days=1), T0 + timedelta(minutes=30))
    assert removed == 3  # old-r, then the families old and cc
    assert await db.get_family("old") is None and await db.get_family("cc") is None
    assert await db.get_family("live") is not None
    assert await db.family_of_refresh_token(token_hash("live-r")) == "live"
