"""Regenerate diracx-client's generated code from the service's OpenAPI spec.

``make client`` runs this. The test ``diracx-client/tests/test_regeneration.py``
generates into a temporary directory and fails if the committed client differs.

The output depends only on the routes and on the pinned tool versions (uv.lock):
the spec's ``info.version`` is fixed, the spec is written with sorted keys, and
the post hooks (``ruff check --fix`` and ``ruff format``, see
``diracx-client/openapi-python-client.yaml``) run the environment's own ruff,
whatever else is on ``PATH``. Any warning of the generator (a schema it cannot
express, a post hook it cannot run) is an error: a silently incomplete or
unformatted client would only show up later as a spurious diff.

Usage: python scripts/generate_client.py [--output DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "diracx-client" / "src" / "diracx" / "client" / "_generated"
CONFIG = ROOT / "diracx-client" / "openapi-python-client.yaml"


class GenerationError(RuntimeError):
    """openapi-python-client failed or warned; the message holds its output."""


def openapi_spec() -> dict[str, object]:
    """The spec of DiracX's own app (installed extensions, such as the example gubbins, are
    left out: they ship clients of their own), with a fixed version so it does not churn."""
    from diracx.core.extensions import builtin_only
    from diracx.core.settings import ServiceSettings
    from diracx.routers.factory import create_app

    with tempfile.TemporaryDirectory() as tmp, builtin_only():
        app = create_app(ServiceSettings(data_dir=Path(tmp)))
        spec = app.openapi()
    spec["info"]["version"] = "0"  # the package version is not part of the interface
    return spec


def tool_env() -> dict[str, str]:
    """The environment of the generator: this interpreter's scripts directory (where the
    environment's ruff lives) first on PATH, UTF-8 everywhere."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join(
        [bindir, *(p for p in env.get("PATH", "").split(os.pathsep) if p)]
    )
    env["PYTHONUTF8"] = "1"
    return env


def generate(output: Path) -> None:
    """Write the generated package to *output* (replaced)."""
    output = Path(output)
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "openapi.json"
        spec_path.write_text(
            json.dumps(openapi_spec(), indent=1, sort_keys=True) + "\n", encoding="utf-8"
        )
        out = Path(tmp) / "out"
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "openapi_python_client",
                "generate",
                "--path",
                str(spec_path),
                "--meta",
                "none",
                "--config",
                str(CONFIG),
                "--output-path",
                str(out),
                "--fail-on-warning",
            ],
            cwd=tmp,
            env=tool_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise GenerationError(
                f"openapi-python-client failed (exit status {result.returncode}):\n"
                + result.stdout.strip()
            )
        for cache in out.rglob("__pycache__"):
            shutil.rmtree(cache)
        if output.exists():
            shutil.rmtree(output)
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(out, output)


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Regenerate diracx-client's generated code from the service's OpenAPI spec."
    )
    parser.add_argument(
        "--output", type=Path, default=TARGET, help=f"where to write it (default: {TARGET})"
    )
    args = parser.parse_args()
    try:
        generate(args.output)
    except GenerationError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"generated the client in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
