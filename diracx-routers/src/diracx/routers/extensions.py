"""What extensions bring to the service: routers, DB classes, access policies, the minimum
client version (entry points, chosen by :mod:`diracx.core.extensions`).

- ``diracx.services``: ``name = "pkg.module:router"``, a ``DiracxRouter``.
- ``diracx.dbs``: ``name = "pkg.module:SomeDB"``, a class built as ``SomeDB(engines)`` on
  the service's database engines when the app starts (then ``await db.open()`` if it has
  one; ``await db.close()`` at shutdown). Handlers get it with ``Annotated[SomeDB,
  Depends(db_dependency(SomeDB))]``.
- ``diracx.access_policies``: ``<service name> = "pkg.module:policy"``, an ``AccessPolicy``
  (or a class of one, built without arguments) that replaces the policy of every route of
  that service when the app is built.
- ``diracx.min_client_version``: ``name = "pkg.module:MIN_VERSION"``, a version string (or a
  function returning one); the service refuses clients older than the highest of these and
  ``DIRACX_MIN_CLIENT_VERSION``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import fastapi.routing
from fastapi import APIRouter, Request
from fastapi.params import Depends as DependsParam
from fastapi.routing import APIRoute
from packaging.version import InvalidVersion, Version

from diracx.core import extensions as ext
from diracx.db.engine import Engines
from diracx.routers.auth import AccessPolicy
from diracx.routers.routing import DiracxRouter

T = TypeVar("T")


# -- routers ----------------------------------------------------------------------------


def load_routers() -> dict[str, APIRouter]:
    """The service's routers by service name (``diracx.services``)."""
    routers: dict[str, APIRouter] = {}
    for name, ep in ext.select_entry_points(ext.SERVICES).items():
        router = ext.load_entry_point(ep)
        if not isinstance(router, APIRouter):
            raise ext.ExtensionError(
                f"service {name!r} ({ep.value}) is not an APIRouter: {router!r}"
            )
        routers[name] = router
    return routers


# -- access policies ----------------------------------------------------------------------


def load_policy_overrides() -> dict[str, AccessPolicy]:
    """The policies extensions put on services, by service name (``diracx.access_policies``)."""
    policies: dict[str, AccessPolicy] = {}
    for name, ep in ext.select_entry_points(ext.ACCESS_POLICIES).items():
        policy = ext.load_entry_point(ep)
        if inspect.isclass(policy) and issubclass(policy, AccessPolicy):
            policy = policy()
        if not isinstance(policy, AccessPolicy):
            raise ext.ExtensionError(
                f"access policy for {name!r} ({ep.value}) is not an AccessPolicy: {policy!r}"
            )
        policies[name] = policy
    return policies


def _without_policies(dependencies: Sequence[DependsParam]) -> list[DependsParam]:
    return [d for d in dependencies if not isinstance(d.dependency, AccessPolicy)]


def _routes(router: APIRouter) -> Iterator[tuple[object, Any]]:
    """(original route, the route as included: prefix, dependencies, responses merged),
    nested routers included, whichever way this FastAPI stores them."""
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    if iter_contexts is None:  # older FastAPI: include_router copied every route
        for route in router.routes:
            yield route, route
        return
    for context in iter_contexts(router.routes):
        yield context.original_route, context


def with_policy(router: APIRouter, policy: AccessPolicy) -> DiracxRouter:
    """A copy of *router* (its nested routers included) whose every route has *policy*
    instead of the one it declared. The routes are added anew, so FastAPI resolves the
    new policy's own dependencies and documents them; everything else stays as it was."""
    copy = DiracxRouter(policy=policy, path_root=getattr(router, "path_root", "/api"))
    for original, view in _routes(router):
        if not isinstance(original, APIRoute):
            raise ext.ExtensionError(
                f"cannot change the policy of {original!r}: it is not an API route"
            )
        copy.add_api_route(
            view.path,
            view.endpoint,
            response_model=view.response_model,
            status_code=view.status_code,
            tags=list(view.tags or []),
            dependencies=_without_policies(view.dependencies or []),
            summary=view.summary,
            description=view.description,
            response_description=view.response_description,
            responses={**policy.responses(), **(view.responses or {})},
            deprecated=view.deprecated,
            methods=sorted(view.methods or []),
            operation_id=view.operation_id,
            response_model_include=view.response_model_include,
            response_model_exclude=view.response_model_exclude,
            response_model_by_alias=view.response_model_by_alias,
            response_model_exclude_unset=view.response_model_exclude_unset,
            response_model_exclude_defaults=view.response_model_exclude_defaults,
            response_model_exclude_none=view.response_model_exclude_none,
            include_in_schema=view.include_in_schema,
            response_class=view.response_class,
            name=view.name,
            callbacks=view.callbacks,
            openapi_extra=view.openapi_extra,
            generate_unique_id_function=view.generate_unique_id_function,
        )
    return copy


def apply_policy_overrides(
    routers: dict[str, APIRouter], overrides: dict[str, AccessPolicy]
) -> dict[str, APIRouter]:
    """*routers* with the overriding policies applied, by service name."""
    unknown = sorted(set(overrides) - set(routers))
    if unknown:
        raise ext.ExtensionError(
            f"access policies are given for services that do not exist: {', '.join(unknown)}"
        )
    return {
        name: with_policy(router, overrides[name]) if name in overrides else router
        for name, router in routers.items()
    }


# -- DB classes ---------------------------------------------------------------------------


def load_db_classes() -> dict[str, type]:
    """The DB classes extensions add, by name (``diracx.dbs``)."""
    classes: dict[str, type] = {}
    for name, ep in ext.select_entry_points(ext.DBS).items():
        cls = ext.load_entry_point(ep)
        if not inspect.isclass(cls):
            raise ext.ExtensionError(f"DB {name!r} ({ep.value}) is not a class: {cls!r}")
        classes[name] = cls
    return classes


async def open_dbs(classes: dict[str, type], engines: Engines) -> dict[str, Any]:
    """Build each DB on *engines* and open it (``await db.open()`` when it has one)."""
    opened: dict[str, Any] = {}
    try:
        for name, cls in classes.items():
            db = cls(engines)
            if hasattr(db, "open"):
                await db.open()
            opened[name] = db
    except BaseException:
        await close_dbs(opened)
        raise
    return opened


async def close_dbs(dbs: dict[str, Any]) -> None:
    for db in reversed(list(dbs.values())):
        if hasattr(db, "close"):
            await db.close()


def db_dependency(cls: type[T]) -> Callable[[Request], T]:
    """A FastAPI dependency giving the app's opened DB of class *cls* (or of a subclass:
    an extension may replace a DB by name with its own)."""

    def get_db(request: Request) -> T:
        dbs: dict[str, Any] = getattr(request.app.state, "extension_dbs", {})
        for db in dbs.values():
            if isinstance(db, cls):
                return db
        raise RuntimeError(
            f"no {cls.__qualname__} is open: declare it in the diracx.dbs entry points"
        )

    get_db.__name__ = f"get_{cls.__name__}"
    return get_db


# -- minimum client version ---------------------------------------------------------------


def min_client_version(configured: str) -> str:
    """The highest of *configured* and the versions extensions require."""
    chosen, chosen_version = configured, Version(configured)
    for name, ep in ext.select_entry_points(ext.MIN_CLIENT_VERSION).items():
        value = ext.load_entry_point(ep)
        if callable(value):  # a function: the extension decides when the service starts
            value = value()
        try:
            version = Version(str(value))
        except (InvalidVersion, TypeError):
            raise ext.ExtensionError(
                f"minimum client version {name!r} ({ep.value}) is not a version: {value!r}"
            ) from None
        if version > chosen_version:
            chosen, chosen_version = str(value), version
    return chosen
