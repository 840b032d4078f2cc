"""The DiracX version, and a check that every installed diracx-* part carries the same one.

All diracx-* distributions are released in lockstep: one version, from the git tag, and each
requires exactly that version of the others (see ``build-support/hatch_lockstep.py``). A mix
still happens (a ``pip install -U diracx-client`` alone, a stale editable install):
:func:`check_versions` reports it, naming each package's version and the command to fix it.
"""

from __future__ import annotations

import warnings
from functools import cache
from importlib.metadata import PackageNotFoundError, distributions, version

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from diracx.core.exceptions import VersionMismatchError

PARTS = (
    "diracx",
    "diracx-core",
    "diracx-db",
    "diracx-routers",
    "diracx-tasks",
    "diracx-client",
    "diracx-api",
    "diracx-cli",
)

#: The version a source tree that was never installed reports (hatch-vcs's fallback_version).
FALLBACK_VERSION = "0.0.1.dev0"


def core_version() -> str:
    try:
        return version("diracx-core")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return FALLBACK_VERSION


__version__ = core_version()


@cache
def installed_versions() -> dict[str, str]:
    """Version of every installed diracx-* distribution, by normalized name.

    If a distribution is installed twice (two entries of ``sys.path``), the first one wins:
    it is the one ``import`` loads.
    """
    found: dict[str, str] = {}
    for dist in distributions():
        name = canonicalize_name(dist.metadata["Name"] or "")
        if name in PARTS:
            found.setdefault(name, dist.version)
    return found


def _release(v: str) -> str:
    """The part of a version that must agree: without the local label (``+g1a2b3c.d20250101``).

    Released versions have no local label; development builds of one checkout differ only there
    (a dirty tree adds a date), so they still count as one version.
    """
    try:
        return Version(v).public
    except InvalidVersion:
        return v


def _newest(versions: list[str]) -> str:
    def key(v: str) -> tuple[int, Version | str]:
        try:
            return (1, Version(v))
        except InvalidVersion:
            return (0, v)

    return max(versions, key=key)


def mismatch_message(versions: dict[str, str]) -> str | None:
    """A message naming each version and its packages, or None if they agree."""
    groups: dict[str, list[str]] = {}
    for name, v in sorted(versions.items()):
        groups.setdefault(_release(v), []).append(name)
    if len(groups) <= 1:
        return None
    listing = "; ".join(
        f"{v}: {', '.join(f'{name}=={versions[name]}' for name in names)}"
        for v, names in sorted(groups.items(), key=lambda item: -len(item[1]))
    )
    target = _release(_newest(list(versions.values())))
    reinstall = " ".join(f"'{name}=={target}'" for name in sorted(versions))
    return (
        f"installed diracx packages have different versions ({listing}). DiracX works only with "
        f"one version across all its parts: reinstall them together, e.g. pip install {reinstall} "
        "(in a source checkout: uv sync --all-packages --reinstall)"
    )


def check_versions(*, strict: bool = False) -> dict[str, str]:
    """Report a mix of diracx versions clearly: a warning, or an error with *strict*.

    Returns the installed versions by distribution name.
    """
    versions = installed_versions()
    message = mismatch_message(versions)
    if message is not None:
        if strict:
            raise VersionMismatchError(message)
        warnings.warn(message, stacklevel=2)
    return versions


def is_older(client: str, minimum: str) -> bool:
    """True if version *client* is older than *minimum* (PEP 440 ordering).

    An unparsable client version counts as older: the server cannot vouch for it.
    """
    try:
        return Version(client) < Version(minimum)
    except InvalidVersion:
        return True
