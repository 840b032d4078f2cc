"""``python -m diracx.routers.auth_admin rotate-key | keys``: the signing keys, from the
command line (``dirac auth rotate-key`` runs this).

Settings come from ``DIRACX_*`` variables (``DIRACX_DB_URL``, ``DIRACX_SECRET_KEY``,
``DIRACX_ACCESS_TOKEN_LIFETIME``). A rotation adds a key that signs from then on (each
replica picks it up within 30 seconds) and retires the keys whose tokens have all
expired; the others stay published, so nobody is logged out. Errors are a message on
stderr and exit code 1.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime

from diracx.core.version import check_versions


async def _rotate() -> int:
    from diracx.core.secrets import SecretBox
    from diracx.core.settings import ServiceSettings
    from diracx.db.auth import AuthDB
    from diracx.db.engine import Engines
    from diracx.routers.signing_keys import rotate_signing_key

    settings = ServiceSettings()
    if settings.secret_key is None:
        print(
            "error: DIRACX_SECRET_KEY is not set: the signing keys are sealed with it "
            "(use the service's own key)",
            file=sys.stderr,
        )
        return 1
    box = SecretBox(settings.secret_key.get_secret_value())
    engines = Engines(settings.resolved_db_url())
    try:
        db = AuthDB(engines)
        record, retired = await rotate_signing_key(
            db, box, datetime.now(UTC), settings.access_token_lifetime
        )
        live = await db.signing_keys()
    finally:
        await engines.dispose()
    print(f"new signing key: {record.kid} (it signs from now on)")
    for kid in retired:
        print(f"retired:         {kid}")
    print(f"published keys:  {len(live)}")
    return 0


async def _list() -> int:
    from diracx.core.settings import ServiceSettings
    from diracx.db.auth import AuthDB
    from diracx.db.engine import Engines

    engines = Engines(ServiceSettings().resolved_db_url())
    try:
        keys = await AuthDB(engines).signing_keys(include_retired=True)
    finally:
        await engines.dispose()
    newest = max((k for k in keys if k.retired is None), key=lambda k: k.created, default=None)
    for k in keys:
        state = (
            f"retired {k.retired:%Y-%m-%d %H:%M:%S}"
            if k.retired
            else ("signs" if k is newest else "verifies")
        )
        print(f"{k.kid}  {k.algorithm}  created {k.created:%Y-%m-%d %H:%M:%S}  {state}")
    if not keys:
        print("no signing key yet (the service makes one when it starts)")
    return 0


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from diracx.core.exceptions import DiracxError

    parser = argparse.ArgumentParser(prog="python -m diracx.routers.auth_admin")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("rotate-key", help="add a signing key; retire the keys no token uses")
    sub.add_parser("keys", help="list the signing keys")
    args = parser.parse_args(argv)
    check_versions()
    try:
        return asyncio.run(_rotate() if args.command == "rotate-key" else _list())
    except (DiracxError, ValidationError, ArgumentError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot reach the database: {exc}", file=sys.stderr)
        return 1
    except DBAPIError as exc:  # no such table (not migrated), or the database is away
        cause = str(getattr(exc, "orig", None) or exc).strip().splitlines()
        print(
            f"error: the database refused: {cause[0] if cause else exc} "
            "(is it reachable, and migrated with `dirac db upgrade`?)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
