"""A pipeline end to end on an S3 store (moto's real server): a real engine and worker.

Host files go straight to the bucket through presigned URLs (a large one in
parts), the worker fetches its inputs into its cache and uploads its outputs,
and the results are downloaded through the service's redirects. The service's
local store stays empty: no blob went through it.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import pytest

from diracx.api import Progress, command, connect, host_dir
from diracx.testing.engine import EngineFactory, EngineProcess
from diracx.testing.s3 import MotoServer

pytestmark = pytest.mark.timeout(240)

MiB = 1024 * 1024
SMALL_PARTS = {"DIRACX_S3_MULTIPART_THRESHOLD": str(6 * MiB)}


class Uploads(Progress):
    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def uploading(self, blobs: int, size: int) -> None:
        self.seen.append((blobs, size))


def bucket_keys(moto: MotoServer, bucket: str, prefix: str = "") -> list[str]:
    client = moto.client()
    keys: list[str] = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return keys


def local_blobs(engine: EngineProcess) -> list[Path]:
    return [p for p in (engine.data_dir / "store").rglob("*") if p.is_file()]


@pytest.fixture
def s3_engine(
    engine_factory: EngineFactory, s3_store_url: dict[str, str]
) -> tuple[EngineProcess, str]:
    engine = engine_factory.start(env={**s3_store_url, **SMALL_PARTS})
    bucket = s3_store_url["DIRACX_STORE_URL"].removeprefix("s3://")
    return engine, bucket


def test_a_pipeline_runs_on_s3(
    s3_engine: tuple[EngineProcess, str], moto_server: MotoServer, tmp_path: Path
) -> None:
    engine, bucket = s3_engine
    salt = uuid.uuid4().hex
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.txt").write_text("hello from the host\n")
    big = os.urandom(13 * MiB + 7)  # over the threshold: uploaded in presigned parts
    (src / "big.bin").write_bytes(big)

    first = command(
        "first",
        [
            "sh",
            "-c",
            'set -e; tr a-z A-Z < "$IN_SRC/hello.txt" > $OUT/shout.txt; '
            'cp "$IN_SRC/big.bin" $OUT/copy.bin; printf x >> $OUT/copy.bin',
        ],
        inputs={"src": host_dir(src)},
        config={"salt": salt},
    )
    second = command(
        "second",
        ["sh", "-c", 'set -e; cat "$IN_FIRST/shout.txt" "$IN_SRC/hello.txt" > $OUT/both.txt'],
        inputs={"first": first, "src": host_dir(src)},
        config={"salt": salt},
    )
    progress = Uploads()
    with connect() as s:
        result = s.realize({"first": first, "second": second}, progress=progress)
        # the three host blobs (two files and the tree's manifest) went to the bucket
        assert progress.seen and progress.seen[0][0] == 3
        assert progress.seen[0][1] > len(big)
        assert result["second"].read_text("both.txt") == (
            "HELLO FROM THE HOST\nhello from the host\n"
        )
        copy = result["first"].read_bytes("copy.bin")  # redirected, verified
        assert hashlib.sha256(copy).hexdigest() == hashlib.sha256(big + b"x").hexdigest()
        dest = result["first"].download(tmp_path / "download")
        assert (dest / "shout.txt").read_text() == "HELLO FROM THE HOST\n"

        # the same input again: nothing to upload
        third = command(
            "third",
            ["sh", "-c", 'wc -c < "$IN_SRC/big.bin" > $OUT/size'],
            inputs={"src": host_dir(src)},
            config={"salt": salt},
        )
        again = Uploads()
        got = s.realize(third, progress=again)
        assert got.read_text("size").strip() == str(len(big))
        assert again.seen == []

    blobs = bucket_keys(moto_server, bucket, "blobs/")
    digest = hashlib.sha256(big).hexdigest()
    assert f"blobs/{digest}" in blobs
    assert f"blobs/{hashlib.sha256(big + b'x').hexdigest()}" in blobs  # the worker's output
    assert bucket_keys(moto_server, bucket, "uploads/") == []  # nothing left staged
    assert moto_server.client().list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert local_blobs(engine) == []  # no blob went through the service's local store
    cache = engine.data_dir / "cache" / "worker-0" / "blobs"
    assert (cache / digest[:2] / digest[2:]).is_file()  # the worker's cache keeps inputs
