"""containers/compose.yaml refers only to things that exist.

No container engine runs here, so the file is checked by reading it: every DiracX
service uses an image built from containers/, runs a command that the image's
entrypoint and our CLIs accept (options checked against the real ``--help`` and
parsed with the code that parses them), gets settings that ``ServiceSettings``
accepts and that point at services of the file, and waits for what it needs.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml  # PyYAML: a requirement of moto[server], which diracx-testing brings

from diracx.core.broker import WorkerCapacity, parse_memory
from diracx.core.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "containers" / "compose.yaml"
# What each image's entrypoint runs when the command is empty or starts with "-"
# (checked against containers/<image>/entrypoint.sh below).
DEFAULT_COMMANDS = {
    "services": ["python", "-m", "diracx.routers", "serve", "--host", "0.0.0.0", "--port", "8000"],
    "tasks": ["python", "-m", "diracx.tasks", "worker"],
}
VARIABLE = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` / ``${VAR:?message}`` with nothing set; ``$$`` is ``$``."""

    def one(match: re.Match[str]) -> str:
        name, kind, rest = match.groups()
        if kind == "-":
            return rest
        if kind == "?":
            return f"test-{name.lower()}"  # required: the user sets it
        raise AssertionError(f"${{{name}}} has no default and is not marked required")

    return VARIABLE.sub(one, value).replace("$$", "$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict) and isinstance(doc.get("services"), dict)
    return doc


def diracx_services(compose: dict[str, Any]) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> (image kind, service) for the services that run a DiracX image."""
    found = {}
    for name, service in compose["services"].items():
        image = interpolate(service["image"])
        repo, _, tag = image.partition(":")
        if repo.startswith("diracx/"):
            assert tag, f"{name}: {image} has no tag"
            found[name] = (repo.removeprefix("diracx/"), service)
    return found


def argv_of(kind: str, service: dict[str, Any]) -> list[str]:
    """What the container runs: its entrypoint's default command, or the command given."""
    command = [interpolate(str(a)) for a in service.get("command", [])]
    if not command or command[0].startswith("-"):
        return DEFAULT_COMMANDS[kind] + command
    return command


@functools.cache
def help_text(*argv: str) -> str:
    proc = subprocess.run(
        [sys.executable, *argv, "--help"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def options(argv: list[str]) -> dict[str, str]:
    """``--name value`` pairs (and ``--flag``: "") of a command line."""
    found: dict[str, str] = {}
    i = 0
    while i < len(argv):
        if argv[i].startswith("--"):
            has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            found[argv[i]] = argv[i + 1] if has_value else ""
            i += 2 if has_value else 1
        else:
            i += 1
    return found


def test_every_service_has_an_image_and_the_diracx_ones_are_built_here(
    compose: dict[str, Any],
) -> None:
    for name, service in compose["services"].items():
        assert service.get("image"), f"service {name} has no image"
    kinds = {kind for kind, _ in diracx_services(compose).values()}
    assert kinds == {"services", "tasks"}
    for kind in kinds:
        assert (ROOT / "containers" / kind / "Dockerfile").is_file()
        entrypoint = (ROOT / "containers" / kind / "entrypoint.sh").read_text()
        assert "exec " + " ".join(DEFAULT_COMMANDS[kind]) in entrypoint
        assert '"${1#-}" != "$1"' in entrypoint  # options go to the default command
    exposed = re.search(
        r"^EXPOSE (\d+)", (ROOT / "containers/services/Dockerfile").read_text(), re.M
    )
    assert exposed is not None
    api_ports = [p.split(":")[-1] for p in compose["services"]["api"]["ports"]]
    assert api_ports == [exposed.group(1)]


def test_every_command_exists_with_its_options(compose: dict[str, Any]) -> None:
    roles: dict[str, list[str]] = {}
    for name, (kind, service) in diracx_services(compose).items():
        argv = argv_of(kind, service)
        assert argv[:2] == ["python", "-m"], (name, argv)
        module, sub = argv[2], argv[3]
        assert module in {"diracx.routers", "diracx.tasks", "diracx.db"}, (name, module)
        # the image has the package: services hold routers and db, tasks hold tasks and db
        assert (
            module.split(".")[1] in {"services": {"routers", "db"}, "tasks": {"tasks", "db"}}[kind]
        ), (name, module, kind)
        assert re.search(rf"\b{sub}\b", help_text("-m", module)), (name, sub)
        usage = help_text("-m", module, sub)
        opts = options(argv[4:])
        for opt in opts:
            assert re.search(rf"{opt}\b", usage), f"{name}: {module} {sub} has no {opt}"
        if sub == "worker":
            capacity = WorkerCapacity(
                queues=tuple(opts.get("--queues", "default").split(",")),
                slots=int(opts.get("--slots", "1")),
                memory_mb=parse_memory(opts["--memory"]) if "--memory" in opts else 0,
                gpus=int(opts.get("--gpus", "0")),
            )
            assert int(opts.get("--concurrency", "1")) >= 1
            roles[name] = list(capacity.queues)
        else:
            roles[name] = [f"{module} {sub}"]
    workers = {n: q for n, q in roles.items() if not q[0].startswith("diracx.")}
    assert len(workers) == 2, roles
    first, second = workers.values()
    assert set(first).isdisjoint(second), "the two workers should serve different queues"
    assert "default" in first + second
    commands = sorted(q[0] for q in roles.values() if q[0].startswith("diracx."))
    assert commands == ["diracx.db upgrade", "diracx.routers serve", "diracx.tasks scheduler"]


def test_settings_are_valid_and_point_at_services_of_the_file(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, (_, service) in diracx_services(compose).items():
        env = {k: interpolate(str(v)) for k, v in service["environment"].items()}
        fields = {k.removeprefix("DIRACX_").lower(): v for k, v in env.items()}
        unknown = set(fields) - set(ServiceSettings.model_fields)
        assert not unknown, f"{name}: settings that do not exist: {unknown}"
        settings = ServiceSettings.model_validate(fields)  # parses and checks every value
        assert settings.service_token is not None
        assert settings.s3_location() == ("diracx", "store")
        for url, port in (
            (settings.resolved_db_url(), 5432),
            (settings.resolved_broker_url(), 6379),
            (settings.s3_endpoint_url or "", 9000),
        ):
            parts = urlsplit(url)
            assert parts.hostname in services, f"{name}: {url} names no service of the file"
            assert parts.port == port, url
        assert settings.resolved_db_url().startswith("postgresql+asyncpg://")
        db = services["postgres"]["environment"]
        assert urlsplit(settings.resolved_db_url()).path == f"/{db['POSTGRES_DB']}"
        assert urlsplit(settings.resolved_db_url()).username == db["POSTGRES_USER"]
    # the token is required, not defaulted: no deployment runs with a known token
    raw = compose["x-diracx-settings"]["DIRACX_SERVICE_TOKEN"]
    assert ":?" in raw


def test_dependencies_and_volumes_exist(compose: dict[str, Any]) -> None:
    services = compose["services"]
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        for target, how in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            assert how["condition"] in CONDITIONS
            if how["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no", target  # a one-shot
            if how["condition"] == "service_healthy":
                assert "healthcheck" in services[target], target
        for volume in service.get("volumes") or []:
            source = volume.split(":")[0]
            assert source.startswith(("/", ".")) or source in declared, (name, volume)
    # nothing DiracX starts before the schema is there
    for name in diracx_services(compose):
        if name != "migrate":
            assert services[name]["depends_on"]["migrate"]["condition"] == (
                "service_completed_successfully"
            ), name
