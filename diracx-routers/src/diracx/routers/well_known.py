"""``/.well-known/dirac-metadata``: what a client needs to know before it logs in."""

from __future__ import annotations

from diracx.core.builders import builder_specs
from diracx.core.models import Metadata
from diracx.core.version import __version__
from diracx.routers.auth import PublicAccess
from diracx.routers.dependencies import Settings
from diracx.routers.routing import DiracxRouter

router = DiracxRouter(
    policy=PublicAccess(), path_root="", prefix="/.well-known", tags=["well-known"]
)


@router.get("/dirac-metadata")
async def get_metadata(settings: Settings) -> Metadata:
    """The server's version, the oldest client it accepts and the executors it knows."""
    return Metadata(
        version=__version__,
        min_client_version=settings.min_client_version,
        executors=sorted(builder_specs()),
    )
