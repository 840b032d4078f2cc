"""DiracX service: the FastAPI application (routers found through ``diracx.services``)."""

from __future__ import annotations

from diracx.routers.factory import create_app

__all__ = ["create_app"]
