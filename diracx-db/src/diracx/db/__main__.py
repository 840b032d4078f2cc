"""``python -m diracx.db upgrade``: apply the migrations (``dirac db upgrade`` runs this).

Settings come from ``DIRACX_*`` variables (``DIRACX_DB_URL``). Prints the revision
before and after; a database that cannot be reached, a bad URL or an unknown
revision is a message on stderr and exit code 1, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from diracx.core.version import check_versions


def _first_line(exc: BaseException) -> str:
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return lines[0] if lines else type(cause).__name__


def upgrade_command(revision: str) -> int:
    from alembic.util import CommandError
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from diracx.core.settings import ServiceSettings
    from diracx.db.data_upgrades import upgrade_data
    from diracx.db.migrate import (
        HEAD,
        DatabaseUnreachableError,
        database_revision,
        describe,
        upgrade,
    )

    try:
        settings = ServiceSettings()
        url = settings.resolved_db_url()
        shown = describe(url)
    except (ValidationError, ArgumentError) as exc:
        print(f"error: bad database settings (DIRACX_DB_URL...): {exc}", file=sys.stderr)
        return 1
    print(f"database: {shown}")
    try:
        before = database_revision(url)
        print(f"revision before: {before or 'none (an empty database)'}")
        if before == HEAD and revision in ("head", HEAD):
            print(f"revision after:  {HEAD} (the newest; nothing to do)")
            return 0
        upgrade(url, revision)
        after = database_revision(url)
        for done in upgrade_data(settings, before) if after == HEAD else []:
            print(f"data: {done}")
    except DatabaseUnreachableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except CommandError as exc:  # an unknown revision...
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except DBAPIError as exc:  # the database went away, or refused a statement
        print(f"error: the upgrade of {shown} failed: {_first_line(exc)}", file=sys.stderr)
        return 1
    print(f"revision after:  {after}{' (the newest)' if after == HEAD else ''}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diracx.db")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upgrade", help="apply the migrations to the database of DIRACX_DB_URL")
    up.add_argument("--revision", default="head", help="the revision to reach (default: head)")
    args = parser.parse_args(argv)
    check_versions()
    return upgrade_command(args.revision)


if __name__ == "__main__":
    sys.exit(main())
