"""DiracX Python SDK: describe pipelines as lazy stages, then realize them on an engine.

>>> from diracx.api import command, connect, host_dir, stage
>>> with connect() as session:                      # DIRACX_URL, or the embedded engine
...     result = session.realize(my_stage)         # doctest: +SKIP

The session half (and with it the HTTP client) is imported on first use: a python
stage's module imports ``diracx.api`` on the worker too, where only the stage
definitions are needed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from diracx.api.instantiate import Instantiated, PipelineInBuilderError, instantiate
from diracx.api.matchers import all_, best, exact, latest, only, some
from diracx.api.stages import Stage, TreeRef, command, host_dir, host_file, stage
from diracx.core.exceptions import ServiceUnavailableError

all = all_  # diracx.api.all(): also under this name (not star-exported: it shadows a builtin)

if TYPE_CHECKING:
    from diracx.api.containers import (
        CacheVolume,
        Container,
        ContainerError,
        Directory,
        File,
        Secret,
        cache_volume,
        container,
        host,
        import_image,
        secret,
        secret_from_env,
    )
    from diracx.api.realization import AsyncRealization
    from diracx.api.session import (
        AsyncSession,
        PipelineFailedError,
        PipelineResult,
        Progress,
        aconnect,
    )
    from diracx.api.sync import Realization, Session, connect

_LAZY = {
    # container pipelines (diracx.api.containers): imported on first use
    **{
        name: "diracx.api.containers"
        for name in (
            "CacheVolume",
            "Container",
            "ContainerError",
            "Directory",
            "File",
            "Secret",
            "cache_volume",
            "container",
            "exact",
            "host",
            "import_image",
            "secret",
            "secret_from_env",
        )
    },
    "AsyncRealization": "diracx.api.realization",
    "AsyncSession": "diracx.api.session",
    "PipelineFailedError": "diracx.api.session",
    "PipelineResult": "diracx.api.session",
    "Progress": "diracx.api.session",
    "aconnect": "diracx.api.session",
    "Realization": "diracx.api.sync",
    "Session": "diracx.api.sync",
    "connect": "diracx.api.sync",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'diracx.api' has no attribute {name!r}")


__all__ = [
    "AsyncRealization",
    "AsyncSession",
    "CacheVolume",
    "Container",
    "ContainerError",
    "Directory",
    "File",
    "Instantiated",
    "PipelineFailedError",
    "PipelineInBuilderError",
    "PipelineResult",
    "Progress",
    "Realization",
    "Secret",
    "ServiceUnavailableError",
    "Session",
    "Stage",
    "TreeRef",
    "aconnect",
    "all_",
    "best",
    "cache_volume",
    "command",
    "connect",
    "container",
    "exact",
    "host",
    "host_dir",
    "host_file",
    "import_image",
    "instantiate",
    "latest",
    "only",
    "secret",
    "secret_from_env",
    "some",
    "stage",
]
