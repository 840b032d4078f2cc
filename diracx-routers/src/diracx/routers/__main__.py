"""``python -m diracx.routers serve``: run the service (``dirac server`` runs this)."""

from __future__ import annotations

import argparse
import sys

from diracx.core.version import check_versions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m diracx.routers")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: 8000, embedded: any free")
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations first")
    serve.add_argument(
        "--embedded",
        action="store_true",
        help="the single-user engine: also start a worker, mint a local token, stop when idle",
    )
    args = parser.parse_args(argv)
    check_versions()
    if args.embedded:
        from diracx.routers.engine import serve_embedded

        return serve_embedded(port=args.port or 0)

    import uvicorn

    from diracx.core.settings import ServiceSettings
    from diracx.db.migrate import upgrade
    from diracx.routers.factory import create_app

    settings = ServiceSettings()
    if settings.service_token is None:
        print(
            "diracx: DIRACX_SERVICE_TOKEN is not set, so every request will be refused (401). "
            "Set it (clients then use it as DIRACX_TOKEN), or run the single-user engine "
            "with --embedded.",
            file=sys.stderr,
        )
    from diracx.core.config_source import ConfigError, open_config_source
    from diracx.core.extensions import ExtensionError

    try:
        # read once before anything starts: a bad configuration or extension is one clear
        # message (the app reads the configuration again when it starts, and keeps it fresh)
        open_config_source(settings)
        app = create_app(settings)
    except (ConfigError, ExtensionError) as exc:
        print(f"diracx: cannot start: {exc}", file=sys.stderr)
        return 1
    if not args.no_migrate:
        upgrade(settings.resolved_db_url())
    uvicorn.run(app, host=args.host, port=args.port or 8000, log_level="info")
    return 0


if __name__ == "__main__":
    sys.exit(main())
