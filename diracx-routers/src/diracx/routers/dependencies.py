"""The service's shared objects, injected into handlers with ``Annotated[..., Depends(...)]``.

The app's lifespan creates them and keeps them on ``app.state``; tests (or the
engine) swap one through ``app.dependency_overrides[get_job_queue] = ...``.
"""

from __future__ import annotations

from typing import Annotated, Any, Protocol, TypeVar

from fastapi import Depends, Request

from diracx.core.config import Config
from diracx.core.settings import ServiceSettings
from diracx.core.store import LocalStore
from diracx.db.engine import Engines
from diracx.db.jobs import JobDB
from diracx.db.os import S3Store
from diracx.db.pipelines import PipelineDB
from diracx.routers.queue import JobQueue


# The getters that nothing calls directly are ``async``: FastAPI runs a plain ``def``
# dependency in a worker thread, a hop that costs more than the lookup (every
# authenticated request needs the settings).
async def get_settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


async def get_config(request: Request) -> Config:
    """The configuration now in force (it may be reloaded between two requests)."""
    config: Config = request.app.state.config_source.current()
    return config


def get_pipeline_db(request: Request) -> PipelineDB:
    db: PipelineDB = request.app.state.pipeline_db
    return db


class OnEngines(Protocol):
    """A DB class that works on the service's engines (JobDB, StoreDB, DeviceFlowDB...)."""

    engines: Engines

    def __init__(self, engines: Engines) -> None: ...


D = TypeVar("D", bound=OnEngines)


def db_on_engines(request: Request, cls: type[D]) -> D:
    """The app's *cls*, on the pipeline DB's engines: made once per app (and again if
    the engines were replaced, as tests do)."""
    engines = get_pipeline_db(request).engines
    made: dict[type[Any], Any] | None = getattr(request.app.state, "dbs_on_engines", None)
    if made is None:
        made = request.app.state.dbs_on_engines = {}
    db = made.get(cls)
    if db is None or db.engines is not engines:
        db = made[cls] = cls(engines)
    return db


async def get_job_db(request: Request) -> JobDB:
    """The jobs API's DB."""
    return db_on_engines(request, JobDB)


def get_store(request: Request) -> LocalStore | S3Store:
    store: LocalStore | S3Store = request.app.state.store
    return store


def get_job_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.job_queue
    return queue


Settings = Annotated[ServiceSettings, Depends(get_settings)]
ConfigDep = Annotated[Config, Depends(get_config)]
PipelineDBDep = Annotated[PipelineDB, Depends(get_pipeline_db)]
JobDBDep = Annotated[JobDB, Depends(get_job_db)]
StoreDep = Annotated[LocalStore | S3Store, Depends(get_store)]
JobQueueDep = Annotated[JobQueue, Depends(get_job_queue)]
