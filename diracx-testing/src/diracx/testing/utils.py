"""Small helpers shared by the fixtures (and usable directly by tests)."""

from __future__ import annotations

import socket
from collections.abc import Mapping

from diracx.core.config import LOCAL_VO


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on *host* right now.

    The port is only reserved while this function runs: start the server that
    uses it soon, and be ready to retry with another port if it was taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def give_blobs_to_vo(db_url: str, sizes: Mapping[str, int], vo: str = LOCAL_VO) -> None:
    """Record that *vo* has the blobs *sizes* (digest -> size), as a build or an upload
    of that VO would: for tests that put blobs into a service's store directly."""
    from sqlalchemy import create_engine

    from diracx.db.migrate import alembic_config
    from diracx.db.visibility import claim_blobs

    engine = create_engine(alembic_config(db_url).attributes["sqlalchemy_url"])
    try:
        with engine.begin() as conn:
            claim_blobs(conn, vo, sizes)
    finally:
        engine.dispose()
