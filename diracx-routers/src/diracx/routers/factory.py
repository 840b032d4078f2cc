"""The app factory: routers from entry points, shared objects in a lifespan, policies checked."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from importlib.metadata import EntryPoint, entry_points

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from diracx.core.config_source import open_config_source
from diracx.core.settings import ServiceSettings
from diracx.core.version import __version__
from diracx.db.os import open_store
from diracx.db.pipelines import PipelineDB
from diracx.routers.client_version import ClientVersionMiddleware
from diracx.routers.errors import install_error_handlers
from diracx.routers.queue import CeleryJobQueue, JobQueue
from diracx.routers.routing import check_policies, iter_routes

logger = logging.getLogger(__name__)

SERVICES_GROUP = "diracx.services"
BUILTIN_DISTRIBUTION = "diracx-routers"


class DuplicateOperationError(RuntimeError):
    """Two routes would get the same OpenAPI operation id (the client's function name)."""


def operation_id(route: APIRoute) -> str:
    """The handler's name: stable, and readable as a function of the generated client."""
    return route.name


def _distribution(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return (dist.metadata["Name"] or "").lower().replace("_", "-") if dist else ""


def select_services() -> dict[str, EntryPoint]:
    """The ``diracx.services`` entry points by name; an extension's one overrides ours."""
    by_name: dict[str, dict[str, EntryPoint]] = defaultdict(dict)
    for ep in entry_points(group=SERVICES_GROUP):
        by_name[ep.name][ep.value] = ep  # the same entry point may be listed twice
    chosen: dict[str, EntryPoint] = {}
    for name, candidates in sorted(by_name.items()):
        extensions = [ep for ep in candidates.values() if _distribution(ep) != BUILTIN_DISTRIBUTION]
        if len(extensions) > 1:
            found = ", ".join(f"{ep.value} ({_distribution(ep)})" for ep in extensions)
            raise RuntimeError(f"several extensions provide the service {name!r}: {found}")
        chosen[name] = extensions[0] if extensions else next(iter(candidates.values()))
    return chosen


def load_routers() -> dict[str, APIRouter]:
    routers: dict[str, APIRouter] = {}
    for name, ep in select_services().items():
        router = ep.load()
        if not isinstance(router, APIRouter):
            raise TypeError(f"service {name!r} ({ep.value}) is not an APIRouter: {router!r}")
        routers[name] = router
    return routers


def check_operation_ids(app: FastAPI) -> None:
    seen: dict[str, str] = {}
    for route in iter_routes(app):
        if not route.is_api_route:
            continue
        for method in sorted(route.methods):
            where = f"{method} {route.path}"
            if route.name in seen:
                raise DuplicateOperationError(
                    f"operation id {route.name!r} is used by {seen[route.name]} and {where}"
                )
            seen[route.name] = where


def make_lifespan(
    job_queue: JobQueue | None,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """Open the database, the store and the job queue; close them at shutdown.

        Migrations are not run here: ``dirac db upgrade`` (or the engine) does it first.
        """
        settings: ServiceSettings = app.state.settings
        if settings.service_token is None:
            logger.warning("DIRACX_SERVICE_TOKEN is not set: every protected route answers 401")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = PipelineDB.from_settings(settings)
        queue = job_queue
        if queue is None:
            celery_queue = CeleryJobQueue(settings)
            celery_queue.warm_up()
            queue = celery_queue
        app.state.pipeline_db = db
        app.state.store = open_store(settings)  # the local directory or an S3 bucket
        app.state.job_queue = queue
        try:
            yield
        finally:
            queue.close()
            await db.close()

    return lifespan


def create_app(
    settings: ServiceSettings | None = None, *, job_queue: JobQueue | None = None
) -> FastAPI:
    """Build the DiracX service.

    *job_queue* replaces the Celery producer (a ``RecordingJobQueue`` in tests);
    ``app.dependency_overrides[get_job_queue]`` works as well. Raises if a route
    declares no access policy, or if two routes share an operation id.
    """
    settings = settings or ServiceSettings()
    app = FastAPI(
        title="DiracX",
        version=__version__,
        description="Pipelines as Python code, realized into an immutable content-addressed store.",
        openapi_url="/api/openapi.json",
        docs_url="/api/docs",
        swagger_ui_oauth2_redirect_url="/api/docs/oauth2-redirect",
        redoc_url=None,
        generate_unique_id_function=operation_id,
        lifespan=make_lifespan(job_queue),
    )
    app.state.settings = settings
    app.state.config_source = open_config_source(settings)
    for router in load_routers().values():
        app.include_router(router, prefix=getattr(router, "path_root", "/api"))
    check_policies(app)
    check_operation_ids(app)
    install_error_handlers(app)
    app.add_middleware(ClientVersionMiddleware, min_version=settings.min_client_version)
    return app
