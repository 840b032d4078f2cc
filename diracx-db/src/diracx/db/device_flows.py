"""DeviceFlowDB: the device authorization requests of ``dirac login`` (RFC 8628).

A row is one login in progress: the device code (kept only as its SHA-256), the code
the user types in a browser, what was asked (VO, group, scope), and, once the user has
logged in, who they are. Status: ``pending`` -> ``approved`` or ``denied``;
``approved`` -> ``consumed`` when the client redeems the device code, once.

The decisions (what a poll answers, who may approve) belong to the router; each
method here is one transaction, with the conditions that make it safe when two
requests race (a conditional UPDATE, a row lock on PostgreSQL).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from diracx.db.engine import Engines
from diracx.db.schema import device_flows

# Finished and abandoned requests are removed this long after they expire.
KEEP_EXPIRED = timedelta(days=1)


class FlowStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    CONSUMED = "consumed"


@dataclass(frozen=True)
class DeviceFlow:
    """One device authorization request, as stored."""

    device_code_hash: str
    user_code: str
    client_id: str
    scope: str
    vo: str
    group: str | None  # None: the user's group is chosen when they log in
    status: FlowStatus
    sub: str | None
    preferred_username: str | None
    idp_state: str | None
    idp_code_verifier: str | None
    idp_nonce: str | None
    created: datetime
    expires: datetime
    last_poll: datetime | None

    def expired(self, now: datetime) -> bool:
        return now >= self.expires


def _flow(row: Any) -> DeviceFlow:
    values = row._mapping
    return DeviceFlow(**{**values, "status": FlowStatus(values["status"])})


class DeviceFlowDB:
    """The ``device_flows`` table, on the service's database engines."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    async def create(
        self,
        *,
        device_code_hash: str,
        user_code: str,
        client_id: str,
        scope: str,
        vo: str,
        group: str | None,
        created: datetime,
        expires: datetime,
    ) -> bool:
        """Record a new pending request; False if *user_code* is already in use
        (the caller draws another). Requests long expired are removed meanwhile."""

        def tx(conn: Connection) -> bool:
            conn.execute(
                delete(device_flows).where(device_flows.c.expires < created - KEEP_EXPIRED)
            )
            taken = conn.execute(
                select(device_flows.c.user_code).where(device_flows.c.user_code == user_code)
            ).first()
            if taken is not None:
                return False
            conn.execute(
                insert(device_flows).values(
                    device_code_hash=device_code_hash,
                    user_code=user_code,
                    client_id=client_id,
                    scope=scope,
                    vo=vo,
                    group=group,
                    status=FlowStatus.PENDING.value,
                    created=created,
                    expires=expires,
                )
            )
            return True

        try:
            return await self.engines.write(tx)
        except IntegrityError:  # another request took the same user code meanwhile
            return False

    async def by_user_code(self, user_code: str) -> DeviceFlow | None:
        def tx(conn: Connection) -> DeviceFlow | None:
            row = conn.execute(
                select(device_flows).where(device_flows.c.user_code == user_code)
            ).first()
            return _flow(row) if row is not None else None

        return await self.engines.read(tx)

    async def start_idp_login(
        self, device_code_hash: str, *, state: str, code_verifier: str, nonce: str, now: datetime
    ) -> bool:
        """Keep the secrets of a redirect to the identity provider (a new redirect
        replaces those of an earlier one); False if the request is no longer pending."""

        def tx(conn: Connection) -> bool:
            result = conn.execute(
                update(device_flows)
                .where(_pending(device_code_hash, now))
                .values(idp_state=state, idp_code_verifier=code_verifier, idp_nonce=nonce)
            )
            return result.rowcount == 1

        return await self.engines.write(tx)

    async def take_idp_login(self, state: str) -> DeviceFlow | None:
        """The request the identity provider's answer with *state* belongs to, as it was;
        its state is cleared, so that the same answer cannot be used twice."""

        def tx(conn: Connection) -> DeviceFlow | None:
            row = conn.execute(
                select(device_flows).where(device_flows.c.idp_state == state).with_for_update()
            ).first()
            if row is None:
                return None
            conn.execute(
                update(device_flows)
                .where(device_flows.c.device_code_hash == row.device_code_hash)
                .values(idp_state=None, idp_code_verifier=None, idp_nonce=None)
            )
            return _flow(row)

        return await self.engines.write(tx)

    async def approve(
        self,
        device_code_hash: str,
        *,
        sub: str,
        preferred_username: str,
        group: str,
        now: datetime,
    ) -> bool:
        """The user logged in: False if the request is no longer pending (or expired)."""
        return await self._finish(
            device_code_hash,
            now,
            status=FlowStatus.APPROVED.value,
            sub=sub,
            preferred_username=preferred_username,
            group=group,
        )

    async def deny(self, device_code_hash: str, now: datetime) -> bool:
        """The user declined: False if the request is no longer pending (or expired)."""
        return await self._finish(device_code_hash, now, status=FlowStatus.DENIED.value)

    async def _finish(self, device_code_hash: str, now: datetime, **values: Any) -> bool:
        def tx(conn: Connection) -> bool:
            result = conn.execute(
                update(device_flows)
                .where(_pending(device_code_hash, now))
                .values(idp_state=None, idp_code_verifier=None, idp_nonce=None, **values)
            )
            return result.rowcount == 1

        return await self.engines.write(tx)

    async def poll(self, device_code_hash: str, now: datetime) -> DeviceFlow | None:
        """A client asks about its request: the request as it was before this poll
        (``last_poll`` is the previous poll's time), and this poll's time recorded."""

        def tx(conn: Connection) -> DeviceFlow | None:
            row = conn.execute(
                select(device_flows)
                .where(device_flows.c.device_code_hash == device_code_hash)
                .with_for_update()  # two polls at once: the second sees the first's time
            ).first()
            if row is None:
                return None
            conn.execute(
                update(device_flows)
                .where(device_flows.c.device_code_hash == device_code_hash)
                .values(last_poll=now)
            )
            return _flow(row)

        return await self.engines.write(tx)

    async def consume(self, device_code_hash: str, client_id: str, now: datetime) -> bool:
        """Redeem an approved, unexpired request: True for exactly one caller, ever."""

        def tx(conn: Connection) -> bool:
            result = conn.execute(
                update(device_flows)
                .where(
                    device_flows.c.device_code_hash == device_code_hash,
                    device_flows.c.client_id == client_id,
                    device_flows.c.status == FlowStatus.APPROVED.value,
                    device_flows.c.expires > now,
                )
                .values(status=FlowStatus.CONSUMED.value)
            )
            return result.rowcount == 1

        return await self.engines.write(tx)


def _pending(device_code_hash: str, now: datetime) -> Any:
    """The request *device_code_hash*, if it still waits for the user and has not expired."""
    return and_(
        device_flows.c.device_code_hash == device_code_hash,
        device_flows.c.status == FlowStatus.PENDING.value,
        device_flows.c.expires > now,
    )
