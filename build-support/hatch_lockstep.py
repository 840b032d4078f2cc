"""Lockstep versions for the diracx-* distributions: one hatchling hook shared by every package.

Every package's ``pyproject.toml`` points at this one file::

    [tool.hatch.metadata.hooks.custom]
    path = "../build-support/hatch_lockstep.py"

    [tool.hatch.build.targets.sdist.hooks.custom]
    path = "../build-support/hatch_lockstep.py"

What it does:

* **Metadata hook** (every build from the source tree: wheel, sdist, editable). The version
  comes from the git tag through hatch-vcs (``[tool.hatch.version]``, same for every package,
  so every distribution built from one checkout carries one version). The hook rewrites each
  requirement on another diracx distribution (``diracx`` or ``diracx-*``, in ``dependencies``
  and in every ``optional-dependencies`` extra) to ``==<that version>``: ``diracx-core``
  becomes ``diracx-core==0.3.1``. In ``pyproject.toml`` these requirements stay unversioned so
  that the uv workspace resolves them to its editable members and ``uv.lock`` does not change
  with every commit; writing a version there is an error (the hook owns it).

* **Build hook, sdist target only.** A source distribution has no ``..`` (no git, no
  ``build-support/``), so the hook freezes the ``pyproject.toml`` it ships: static ``version``,
  pinned requirements, no hook and no hatch-vcs. A wheel built from the sdist (``uv build``,
  ``pip install diracx-core-X.tar.gz``) therefore gets the same version and pins, with no git
  and no network-visible plugin. ``PKG-INFO`` carries the same version as usual.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface
from hatchling.metadata.plugin.interface import MetadataHookInterface
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

#: Distributions released in lockstep: the metapackage ``diracx`` and every ``diracx-*``.
LOCKSTEP_NAME = re.compile(r"^diracx(-[a-z0-9]+(-[a-z0-9]+)*)?$")

HOOK_FILE = "build-support/hatch_lockstep.py"


def is_lockstep(name: str) -> bool:
    return LOCKSTEP_NAME.match(canonicalize_name(name)) is not None


def pin(requirement: str, version: str, *, where: str) -> str:
    """``diracx-core[x]; marker`` -> ``diracx-core[x]==<version>; marker``; others unchanged."""
    req = Requirement(requirement)
    if not is_lockstep(req.name):
        return requirement
    if req.url or str(req.specifier):
        raise ValueError(
            f"{where}: {requirement!r}: leave diracx-* requirements unversioned in pyproject.toml; "
            f"the lockstep hook ({HOOK_FILE}) pins them to the version being built"
        )
    req.specifier = SpecifierSet(f"=={version}")
    return str(req)


def pin_project(project: dict[str, Any], version: str) -> None:
    """Pin, in place, the diracx-* requirements of a ``[project]`` table."""
    name = project.get("name", "?")
    if "dependencies" in project:
        project["dependencies"] = [
            pin(r, version, where=f"{name}: dependencies") for r in project["dependencies"]
        ]
    for extra, requirements in project.get("optional-dependencies", {}).items():
        project["optional-dependencies"][extra] = [
            pin(r, version, where=f"{name}: optional-dependencies.{extra}") for r in requirements
        ]


class LockstepMetadataHook(MetadataHookInterface):
    PLUGIN_NAME = "custom"

    def update(self, metadata: dict[str, Any]) -> None:
        version = metadata.get("version")
        if not version:
            raise ValueError(
                f"{metadata.get('name')}: the lockstep hook needs the version: set "
                "dynamic = ['version'] and [tool.hatch.version] source = 'vcs'"
            )
        pin_project(metadata, str(version))


class LockstepSdistHook(BuildHookInterface):
    """Ship a frozen, self-contained pyproject.toml in the sdist."""

    PLUGIN_NAME = "custom"

    _frozen: str | None = None

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "sdist":
            return
        original = os.path.join(self.root, "pyproject.toml")
        with open(original, "rb") as f:
            data = tomllib.load(f)
        frozen = freeze_pyproject(data, self.metadata.version)
        text = (
            f"# Frozen by {HOOK_FILE} when this sdist was built: static version, diracx-*\n"
            "# requirements pinned to it. The source repository's pyproject.toml differs.\n\n"
            + dumps_toml(frozen).lstrip("\n")
        )
        if tomllib.loads(text) != frozen:  # pragma: no cover - guards the small emitter below
            raise RuntimeError("lockstep: the frozen pyproject.toml does not round-trip")
        fd, self._frozen = tempfile.mkstemp(prefix="pyproject-", suffix=".toml")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        force_include = build_data["force_include"]
        for source in [s for s, target in force_include.items() if target == "pyproject.toml"]:
            del force_include[source]
        force_include[self._frozen] = "pyproject.toml"

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        if self._frozen is not None:
            os.unlink(self._frozen)
            self._frozen = None


def freeze_pyproject(data: dict[str, Any], version: str) -> dict[str, Any]:
    """The pyproject.toml of the sdist: no git, no hook, no hatch-vcs needed to build it."""
    data = json.loads(json.dumps(data))  # deep copy (TOML data is JSON-compatible here)
    project = data["project"]
    # put the static version right after the name, where a reader looks for it
    fields = list(project.items())
    project.clear()
    for key, value in fields:
        project[key] = value
        if key == "name":
            project["version"] = version
    project.setdefault("version", version)
    dynamic = [f for f in project.get("dynamic", []) if f != "version"]
    if dynamic:
        project["dynamic"] = dynamic
    else:
        project.pop("dynamic", None)
    pin_project(project, version)

    hatch = data.get("tool", {}).get("hatch", {})
    hatch.pop("version", None)
    _drop(hatch, "metadata", "hooks", "custom")
    _drop(hatch, "build", "targets", "sdist", "hooks", "custom")
    _drop(data.get("tool", {}), "uv", "cache-keys")

    build_system = data.get("build-system", {})
    build_system["requires"] = [
        r
        for r in build_system.get("requires", [])
        if canonicalize_name(Requirement(r).name) != "hatch-vcs"
    ]
    return data


def _drop(table: dict[str, Any], *path: str) -> None:
    """Remove table[path...], then every table on the way that became empty."""
    if not path or not isinstance(table.get(path[0]), dict):
        if len(path) == 1:
            table.pop(path[0], None)
        return
    if len(path) == 1:
        del table[path[0]]
        return
    _drop(table[path[0]], *path[1:])
    if not table[path[0]]:
        del table[path[0]]


# A TOML emitter for what pyproject.toml files hold (hatchling ships no TOML writer).

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"lockstep: cannot write {type(value).__name__} to TOML")


def dumps_toml(data: dict[str, Any], prefix: tuple[str, ...] = ()) -> str:
    lines: list[str] = []
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if prefix and (not tables or len(tables) < len(data)):
        lines.append("\n[" + ".".join(_key(p) for p in prefix) + "]")
    for key, value in data.items():
        if not isinstance(value, dict):
            lines.append(f"{_key(key)} = {_value(value)}")
    if lines:
        lines.append("")
    out = "\n".join(lines)
    for key, value in tables.items():
        out += dumps_toml(value, (*prefix, key))
    return out


def get_metadata_hook() -> type[MetadataHookInterface]:
    return LockstepMetadataHook


def get_build_hook() -> type[BuildHookInterface]:
    return LockstepSdistHook
