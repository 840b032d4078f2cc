"""Extensions: other distributions that add to DiracX, or replace parts of it, by name.

DiracX finds its parts through entry points; an extension declares entry points in the
same groups. Installed means active (the deployment chooses its extension by installing
it, in the service, worker and client images alike):

=============================  ==============================================================
group                          an entry point names...
=============================  ==============================================================
``diracx.services``            an ``APIRouter`` (a ``DiracxRouter``) of the service
``diracx.dbs``                 a DB class built on the service's database engines
``diracx.executors``           an ``Executor`` class of the workers
``diracx.builders``            the builder spec model of an executor
``diracx.cli``                 a Typer app (a command group) or a function of ``dirac``
``diracx.access_policies``     an ``AccessPolicy`` replacing the one of a service, by name
``diracx.min_client_version``  a version string: the service refuses older clients
=============================  ==============================================================

Within a group an entry point of an extension overrides DiracX's own of the same name;
two extensions providing the same name is an error (which one should win is not ours to
guess). Tools that must describe DiracX itself, whatever is installed (the generator
of ``diracx-client``), select inside :func:`builtin_only`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from importlib.metadata import EntryPoint, entry_points

SERVICES = "diracx.services"
DBS = "diracx.dbs"
EXECUTORS = "diracx.executors"
CLI = "diracx.cli"
ACCESS_POLICIES = "diracx.access_policies"
MIN_CLIENT_VERSION = "diracx.min_client_version"

_builtin_only: ContextVar[bool] = ContextVar("diracx_builtin_only", default=False)


class ExtensionError(RuntimeError):
    """Installed extensions conflict, or an entry point is not what its group expects."""


def distribution_name(ep: EntryPoint) -> str:
    """The normalized name of the distribution that declares *ep* ("" if unknown)."""
    dist = getattr(ep, "dist", None)
    name = (dist.metadata["Name"] or "") if dist is not None else ""
    return name.lower().replace("_", "-").replace(".", "-")


def is_builtin(ep: EntryPoint) -> bool:
    """Declared by DiracX itself: the ``diracx`` metapackage or a ``diracx-*`` part."""
    name = distribution_name(ep)
    return name == "diracx" or name.startswith("diracx-")


@contextlib.contextmanager
def builtin_only() -> Iterator[None]:
    """Within this block, selections ignore extensions: DiracX as it ships."""
    token = _builtin_only.set(True)
    try:
        yield
    finally:
        _builtin_only.reset(token)


def select_entry_points(group: str) -> dict[str, EntryPoint]:
    """The entry points of *group* by name, sorted: an extension's one overrides ours.

    Raises ExtensionError if several extensions provide the same name.
    """
    by_name: dict[str, dict[str, EntryPoint]] = {}
    for ep in entry_points(group=group):
        # the same entry point may be listed twice (a distribution twice on sys.path)
        by_name.setdefault(ep.name, {})[ep.value] = ep
    chosen: dict[str, EntryPoint] = {}
    for name, candidates in sorted(by_name.items()):
        builtin = [ep for ep in candidates.values() if is_builtin(ep)]
        extensions = (
            [] if _builtin_only.get() else [ep for ep in candidates.values() if ep not in builtin]
        )
        if len(extensions) > 1:
            found = ", ".join(f"{ep.value} ({distribution_name(ep) or '?'})" for ep in extensions)
            raise ExtensionError(f"several extensions provide {name!r} in {group}: {found}")
        if extensions:
            chosen[name] = extensions[0]
        elif builtin:
            chosen[name] = builtin[0]
    return chosen


def load_entry_point(ep: EntryPoint) -> object:
    """``ep.load()``, with a message naming the entry point if its target cannot be imported."""
    try:
        return ep.load()
    except Exception as exc:
        raise ExtensionError(
            f"entry point {ep.group}:{ep.name} = {ep.value} "
            f"({distribution_name(ep) or 'unknown distribution'}) cannot be loaded: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
