"""DiracX Python SDK: describe pipelines as lazy stages, then realize them on an engine.

>>> from diracx.api import command, connect, host_dir, stage
>>> with connect() as session:                      # DIRACX_URL, or the embedded engine
...     result = session.realize(my_stage)         # doctest: +SKIP
"""

from diracx.api.instantiate import Instantiated, PipelineInBuilderError, instantiate
from diracx.api.realization import AsyncRealization
from diracx.api.session import (
    AsyncSession,
    PipelineFailedError,
    PipelineResult,
    Progress,
    aconnect,
)
from diracx.api.stages import Stage, TreeRef, command, host_dir, host_file, stage
from diracx.api.sync import Realization, Session, connect

__all__ = [
    "AsyncRealization",
    "AsyncSession",
    "Instantiated",
    "PipelineFailedError",
    "PipelineInBuilderError",
    "PipelineResult",
    "Progress",
    "Realization",
    "Session",
    "Stage",
    "TreeRef",
    "aconnect",
    "command",
    "connect",
    "host_dir",
    "host_file",
    "instantiate",
    "stage",
]
