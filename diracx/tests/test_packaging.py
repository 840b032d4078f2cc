"""Lockstep packaging: every distribution built from this checkout carries one version.

Builds all the wheels of the workspace (``uv build --all-packages --wheel``), and the sdist of
two of them (then a wheel from that sdist, with no git in sight), and reads what a user's pip
would read: each wheel's METADATA and file list.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tomllib
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
METAPACKAGE_PARTS = {"diracx-client", "diracx-api", "diracx-cli"}
METAPACKAGE_SERVER = {"diracx-routers", "diracx-tasks"}


def workspace_members() -> dict[str, Path]:
    """Distribution name -> package directory, from the root pyproject's uv workspace."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        members = tomllib.load(f)["tool"]["uv"]["workspace"]["members"]
    found = {}
    for member in members:
        with open(ROOT / member / "pyproject.toml", "rb") as f:
            found[canonicalize_name(tomllib.load(f)["project"]["name"])] = ROOT / member
    return found


def uv_build(out: Path, *args: str) -> None:
    uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` sets UV to its own path
    if uv is None:
        pytest.skip("uv is not installed: run `make test`, which installs it")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SETUPTOOLS_SCM_PRETEND")}
    done = subprocess.run(
        [uv, "build", "--quiet", "--no-build-logs", "-o", str(out), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"uv build {' '.join(args)} failed:\n{done.stderr}"


def metadata_of(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(zf.read(name).decode())


def requirements(metadata: Message) -> list[Requirement]:
    return [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]


def lockstep_requirements(metadata: Message) -> list[Requirement]:
    return [r for r in requirements(metadata) if canonicalize_name(r.name) in workspace_members()]


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("wheels")
    uv_build(out, "--all-packages", "--wheel")
    built = {}
    for wheel in sorted(out.glob("*.whl")):
        name, *_ = parse_wheel_filename(wheel.name)
        built[str(name)] = wheel
    return built


def test_every_workspace_member_builds_a_wheel(wheels: dict[str, Path]) -> None:
    assert set(wheels) == set(workspace_members())


def test_one_version_for_all(wheels: dict[str, Path]) -> None:
    versions = {name: metadata_of(wheel)["Version"] for name, wheel in wheels.items()}
    assert len(set(versions.values())) == 1, f"versions differ: {versions}"
    Version(next(iter(versions.values())))  # a valid PEP 440 version


def test_diracx_requirements_are_pinned_to_that_version(wheels: dict[str, Path]) -> None:
    for name, wheel in wheels.items():
        metadata = metadata_of(wheel)
        for req in lockstep_requirements(metadata):
            assert str(req.specifier) == f"=={metadata['Version']}", f"{name}: {req}"


def test_metapackage_requires_exactly_its_parts(wheels: dict[str, Path]) -> None:
    metadata = metadata_of(wheels["diracx"])
    version = metadata["Version"]
    plain = {
        canonicalize_name(r.name): str(r.specifier)
        for r in requirements(metadata)
        if r.marker is None
    }
    server = {
        canonicalize_name(r.name): str(r.specifier)
        for r in requirements(metadata)
        if r.marker is not None and r.marker.evaluate({"extra": "server"})
    }
    assert plain == {part: f"=={version}" for part in METAPACKAGE_PARTS}
    assert server == {part: f"=={version}" for part in METAPACKAGE_SERVER}
    assert metadata.get_all("Provides-Extra") == ["server"]


def test_native_namespace_packages(wheels: dict[str, Path]) -> None:
    for name, wheel in wheels.items():
        with zipfile.ZipFile(wheel) as zf:
            files = [n for n in zf.namelist() if ".dist-info/" not in n]
        assert "diracx/__init__.py" not in files, f"{wheel.name} ships diracx/__init__.py"
        if name == "diracx":
            assert files == [], f"the metapackage ships files: {files}"
            continue
        # diracx-core ships diracx/core/... and nothing else; an extension, its own package
        subpackage = "diracx/" + name.removeprefix("diracx-") + "/"
        if not name.startswith("diracx-"):
            subpackage = name + "/"
        assert files, f"{wheel.name} is empty"
        strays = [f for f in files if not f.startswith(subpackage)]
        assert not strays, f"{wheel.name} ships files outside {subpackage}: {strays}"


@pytest.mark.parametrize("package", ["diracx", "diracx-db"])
def test_sdist_is_self_contained(package: str, tmp_path: Path) -> None:
    """The sdist carries the version (PKG-INFO and a frozen pyproject.toml), and a wheel built
    from it alone, far from git and from build-support/, has the same version and pins."""
    out = tmp_path / "dist"
    uv_build(out, "--package", package, "--wheel", "--sdist")
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    with tarfile.open(sdist) as tf:
        top = tf.getnames()[0].split("/")[0]
        pkg_info = Parser().parsestr(tf.extractfile(f"{top}/PKG-INFO").read().decode())  # type: ignore[union-attr]
        pyproject = tomllib.loads(tf.extractfile(f"{top}/pyproject.toml").read().decode())  # type: ignore[union-attr]
        if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4
            tf.extraction_filter = tarfile.data_filter
        tf.extractall(tmp_path / "unpacked")
    version = pkg_info["Version"]
    assert pyproject["project"]["version"] == version
    assert "version" not in pyproject["project"].get("dynamic", [])
    assert "hatch-vcs" not in " ".join(pyproject["build-system"]["requires"])
    assert "hooks" not in str(pyproject.get("tool", {}).get("hatch", {}))

    # uv built the wheel from the sdist: same metadata as the sdist's
    assert metadata_of(wheel)["Version"] == version
    assert sorted(map(str, requirements(metadata_of(wheel)))) == sorted(
        map(str, requirements(pkg_info))
    )
    assert lockstep_requirements(pkg_info), "no diracx-* requirement to check"
    for req in lockstep_requirements(pkg_info):
        assert str(req.specifier) == f"=={version}"

    # and once more by hand, from the unpacked sdist moved out of any git checkout
    rebuilt = tmp_path / "rebuilt"
    uv_build(rebuilt, "--wheel", str(tmp_path / "unpacked" / top))
    [again] = rebuilt.glob("*.whl")
    assert metadata_of(again)["Version"] == version
    assert sorted(map(str, requirements(metadata_of(again)))) == sorted(
        map(str, requirements(pkg_info))
    )


def test_no_diracx_init_in_the_source_tree() -> None:
    """Native namespace packages: no diracx/__init__.py in any package's source."""
    for directory in workspace_members().values():
        assert not (directory / "src" / "diracx" / "__init__.py").exists(), directory


# PyPI name -> conda-forge name, where they differ
CONDA_NAMES = {"build": "python-build"}


def test_environment_yml_follows_the_pyprojects() -> None:
    """environment.yml lists every third-party requirement and installs every package."""
    listed: set[str] = set()
    editable: set[str] = set()
    for line in (ROOT / "environment.yml").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("- -e "):
            editable.add(line.removeprefix("- -e ").strip().removeprefix("./").rstrip("/"))
        elif line.startswith("- ") and not line.endswith(":"):
            name = re.match(r"[A-Za-z0-9_.-]+", line[2:])
            assert name, line
            listed.add(canonicalize_name(name.group()))

    members = workspace_members()
    assert editable == {path.relative_to(ROOT).as_posix() for path in members.values()}

    needed: dict[str, str] = {}
    with open(ROOT / "pyproject.toml", "rb") as f:
        groups = tomllib.load(f).get("dependency-groups", {})
    sources = [("dependency-groups.dev", r) for r in groups.get("dev", [])]
    for path in members.values():
        with open(path / "pyproject.toml", "rb") as f:
            project = tomllib.load(f)["project"]
        sources += [(path.name, r) for r in project.get("dependencies", [])]
        for extra in project.get("optional-dependencies", {}).values():
            sources += [(path.name, r) for r in extra]
    for where, requirement in sources:
        name = canonicalize_name(Requirement(requirement).name)
        if name not in members:
            needed[CONDA_NAMES.get(name, name)] = where
    missing = {name: where for name, where in needed.items() if name not in listed}
    assert not missing, f"environment.yml lacks (requirement: from) {missing}"
