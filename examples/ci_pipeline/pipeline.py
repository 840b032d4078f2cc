"""CI for the bundled project, in the style of Dagger: test it in a container, then package it.

    python examples/ci_pipeline/pipeline.py                      # on alpine:3.20 (Docker Hub)
    python examples/ci_pipeline/pipeline.py --image ghcr.io/me/alpine:3.20
    python examples/ci_pipeline/pipeline.py --image ./busybox-layout --out dist

``--image`` is a registry reference, or a path to an OCI layout directory or a
``docker save`` tarball. The tests run with a cache volume mounted at /cache (their
large corpus is made once per worker, then reused); the package is exported to
``--out``. Run it twice: the second run starts no container step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from diracx.api import (
    Container,
    Directory,
    Session,
    cache_volume,
    connect,
    container,
    host,
    import_image,
)

HERE = Path(__file__).resolve().parent
PUBLIC_IMAGE = "docker.io/library/alpine:3.20"


def base_image(image: str, session: Session | None = None) -> Container:
    """A registry reference, or an image on disk (OCI layout directory, docker save tar)."""
    if Path(image).exists():
        return import_image(image, session=session)
    return container(session=session).from_(image)


def ci(base: Container) -> tuple[Container, Directory]:
    """The tested container and the directory holding the package."""
    source = host().directory(HERE / "project", exclude=["*.tmp", "dist/"])
    tested = (
        base.with_directory("/src", source)
        .with_workdir("/src")
        .with_mounted_cache("/cache", cache_volume("wordfreq-test-corpus"))
        .with_env_variable("TEST_CACHE", "/cache")
        .with_exec(["sh", "tests/run_tests.sh"])
    )
    packaged = tested.with_exec(
        [
            "sh",
            "-c",
            'mkdir -p /dist && tar -czf "/dist/wordfreq-$(cat VERSION).tar.gz" bin VERSION',
        ]
    )
    return tested, packaged.directory("/dist")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default=PUBLIC_IMAGE, help=f"default: {PUBLIC_IMAGE}")
    parser.add_argument("--out", type=Path, default=Path("dist"), help="where the package goes")
    args = parser.parse_args(argv)
    with connect() as session:
        tested, dist = ci(base_image(args.image, session))
        print(tested.stdout(), end="")
        dist.export(args.out)
    for path in sorted(args.out.iterdir()):
        print(f"package: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
