"""Regenerate diracx-client's generated code from the service's OpenAPI spec.

``make client`` runs this. The test ``diracx-client/tests/test_regeneration.py``
generates into a temporary directory and fails if the committed client differs.

Usage: python scripts/generate_client.py [--output DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "diracx-client" / "src" / "diracx" / "client" / "_generated"
CONFIG = ROOT / "diracx-client" / "openapi-python-client.yaml"


def openapi_spec() -> dict[str, object]:
    """The spec of the app as installed, with a fixed version so it does not churn."""
    from diracx.core.settings import ServiceSettings
    from diracx.routers.factory import create_app

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(ServiceSettings(data_dir=Path(tmp)))
        spec = app.openapi()
    spec["info"]["version"] = "0"  # the package version is not part of the interface
    return spec


def generate(output: Path) -> None:
    """Write the generated package to *output* (replaced)."""
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "openapi.json"
        spec_path.write_text(json.dumps(openapi_spec(), indent=1, sort_keys=True))
        out = Path(tmp) / "out"
        subprocess.run(
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
            ],
            check=True,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
        )
        if output.exists():
            shutil.rmtree(output)
        shutil.copytree(out, output)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", type=Path, default=TARGET)
    args = parser.parse_args()
    generate(args.output)
    print(f"generated the client in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
