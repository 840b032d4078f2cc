"""``DiracxRouter``: a router whose every route carries a declared access policy."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import fastapi.routing
from fastapi import APIRouter, Depends, FastAPI
from fastapi.params import Depends as DependsParam
from starlette.routing import BaseRoute

from diracx.routers.auth import AccessPolicy
from diracx.routers.errors import CLIENT_VERSION_RESPONSES, VALIDATION_RESPONSES


class UndeclaredAccessPolicyError(RuntimeError):
    """A route does not say who may call it: the service refuses to start."""


class DiracxRouter(APIRouter):
    """An ``APIRouter`` that applies *policy* to every route it holds.

    *path_root* is where the app mounts it: ``/api`` for the API, ``""`` for
    ``/.well-known``.
    """

    def __init__(
        self,
        *,
        policy: AccessPolicy,
        path_root: str = "/api",
        dependencies: Sequence[DependsParam] | None = None,
        responses: dict[int | str, dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(policy, AccessPolicy):
            raise TypeError(f"policy must be an AccessPolicy, not {policy!r}")
        defaults = {**VALIDATION_RESPONSES, **policy.responses()}
        if not policy.public:  # public routes are exempt from the client version check
            defaults |= CLIENT_VERSION_RESPONSES
        super().__init__(
            dependencies=[Depends(policy), *(dependencies or [])],
            responses={**defaults, **(responses or {})},
            **kwargs,
        )
        self.policy = policy
        self.path_root = path_root


@dataclass(frozen=True)
class RouteView:
    """What the app serves at one path: its methods, name and dependencies."""

    path: str
    methods: frozenset[str]
    name: str
    dependencies: tuple[DependsParam, ...]
    is_api_route: bool

    @property
    def policy(self) -> AccessPolicy | None:
        for dep in self.dependencies:
            if isinstance(dep.dependency, AccessPolicy):
                return dep.dependency
        return None


def iter_routes(app: FastAPI) -> Iterator[RouteView]:
    """Every route of *app*, routers included (whatever way FastAPI stores them)."""
    iter_contexts = getattr(fastapi.routing, "iter_route_contexts", None)
    routes: Sequence[Any] = (
        list(iter_contexts(app.routes)) if iter_contexts is not None else app.routes
    )
    for route in routes:
        original: BaseRoute = getattr(route, "original_route", route)
        yield RouteView(
            path=str(getattr(route, "path", "")),
            methods=frozenset(getattr(route, "methods", None) or ()),
            name=str(getattr(route, "name", "")),
            dependencies=tuple(getattr(route, "dependencies", ()) or ()),
            is_api_route=isinstance(original, fastapi.routing.APIRoute),
        )


def check_policies(app: FastAPI) -> None:
    """Refuse to serve an API route that declares no access policy."""
    for route in iter_routes(app):
        if route.is_api_route and route.policy is None:
            methods = ",".join(sorted(route.methods))
            raise UndeclaredAccessPolicyError(
                f"route {methods} {route.path} ({route.name}) declares no access policy: "
                "define it on a DiracxRouter(policy=...)"
            )
