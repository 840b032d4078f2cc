"""The app factory: routers from entry points, shared objects in a lifespan, policies checked."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from fastapi import FastAPI
from fastapi.routing import APIRoute

from diracx.core.config_source import ConfigError, open_config_source
from diracx.core.settings import ServiceSettings
from diracx.core.version import __version__
from diracx.db.auth import AuthDB
from diracx.db.os import open_store
from diracx.db.pipelines import PipelineDB
from diracx.routers.client_version import ClientVersionMiddleware
from diracx.routers.errors import install_error_handlers
from diracx.routers.extensions import (
    apply_policy_overrides,
    close_dbs,
    load_db_classes,
    load_policy_overrides,
    load_routers,
    min_client_version,
    open_dbs,
)
from diracx.routers.queue import CeleryJobQueue, JobQueue
from diracx.routers.routing import check_policies, iter_routes
from diracx.routers.tokens import start_token_service

logger = logging.getLogger(__name__)


class DuplicateOperationError(RuntimeError):
    """Two routes would get the same OpenAPI operation id (the client's function name)."""


def operation_id(route: APIRoute) -> str:
    """The handler's name: stable, and readable as a function of the generated client."""
    return route.name


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
    job_queue: JobQueue | None, db_classes: dict[str, type]
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        """Open the configuration, the database (and the extensions' DBs), the store and the
        job queue; close them at shutdown, in reverse order. A configuration that cannot be
        read stops the start with its message.

        Migrations are not run here: ``dirac db upgrade`` (or the engine) does it first.
        """
        settings: ServiceSettings = app.state.settings
        if settings.service_token is None:
            logger.warning("DIRACX_SERVICE_TOKEN is not set: every protected route answers 401")
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        async with AsyncExitStack() as stack:
            try:
                config_source = await asyncio.to_thread(open_config_source, settings)
            except ConfigError as exc:
                logger.critical("the service cannot start: %s", exc)
                raise
            app.state.config_source = config_source
            logger.info(
                "configuration %s, revision %s: %s",
                config_source.origin,
                config_source.revision[:12],
                config_source.current().summary(),
            )
            await config_source.start()  # reloads it in the background
            stack.push_async_callback(config_source.stop)
            db = PipelineDB.from_settings(settings)
            stack.push_async_callback(db.close)
            queue = job_queue
            if queue is None:
                celery_queue = CeleryJobQueue(settings)
                celery_queue.warm_up()
                queue = celery_queue
            stack.callback(queue.close)
            app.state.pipeline_db = db
            app.state.store = open_store(settings)  # the local directory or an S3 bucket
            app.state.job_queue = queue
            tokens = await start_token_service(settings, AuthDB(db.engines))
            stack.push_async_callback(tokens.close)
            app.state.token_service = tokens
            extension_dbs = await open_dbs(db_classes, db.engines)
            stack.push_async_callback(close_dbs, extension_dbs)
            app.state.extension_dbs = extension_dbs
            app.state.started = True  # /api/health/startup
            # What exists now lives as long as the service: keep it out of the garbage
            # collector's full passes, which a large request triggers every few requests
            # (about 100 ms each over the 100 000s of objects of the imports, 7 without).
            gc.freeze()
            try:
                yield
            finally:
                app.state.started = False
                gc.unfreeze()

    return lifespan


def create_app(
    settings: ServiceSettings | None = None, *, job_queue: JobQueue | None = None
) -> FastAPI:
    """Build the DiracX service.

    *job_queue* replaces the Celery producer (a ``RecordingJobQueue`` in tests);
    ``app.dependency_overrides[get_job_queue]`` works as well. Routers, DB classes, access
    policies and the minimum client version come from entry points (installed extensions
    included: :mod:`diracx.routers.extensions`). Raises if a route declares no access
    policy, or if two routes share an operation id. The configuration is read when the
    app starts (its lifespan), not here.
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
        lifespan=make_lifespan(job_queue, load_db_classes()),
    )
    # extensions may raise the minimum client version (diracx.min_client_version)
    minimum = min_client_version(settings.min_client_version)
    if minimum != settings.min_client_version:
        settings = settings.model_copy(update={"min_client_version": minimum})
    app.state.settings = settings
    app.state.started = False
    routers = apply_policy_overrides(load_routers(), load_policy_overrides())
    for router in routers.values():
        app.include_router(router, prefix=getattr(router, "path_root", "/api"))
    check_policies(app)
    check_operation_ids(app)
    install_error_handlers(app)
    app.add_middleware(ClientVersionMiddleware, min_version=settings.min_client_version)
    return app
