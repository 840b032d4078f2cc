"""The S3 fixtures: moto's server in a process of its own, a fresh bucket per test."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from diracx.testing.s3 import MotoServer, start_moto

SEEN: list[str] = []


@pytest.mark.parametrize("round", [1, 2])
def test_each_test_gets_a_fresh_empty_bucket(
    s3_store_url: dict[str, str], moto_server: MotoServer, round: int
) -> None:
    assert set(s3_store_url) == {
        "DIRACX_STORE_URL",
        "DIRACX_S3_ENDPOINT_URL",
        "DIRACX_S3_REGION",
        "DIRACX_S3_ACCESS_KEY_ID",
        "DIRACX_S3_SECRET_ACCESS_KEY",
    }
    assert s3_store_url["DIRACX_S3_ENDPOINT_URL"] == moto_server.endpoint_url
    bucket = s3_store_url["DIRACX_STORE_URL"].removeprefix("s3://")
    assert bucket not in SEEN
    SEEN.append(bucket)
    client = moto_server.client()
    assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    client.put_object(Bucket=bucket, Key="x", Body=b"y")


def test_the_buckets_of_earlier_tests_are_gone(moto_server: MotoServer) -> None:
    names = {b["Name"] for b in moto_server.client().list_buckets()["Buckets"]}
    assert not names & set(SEEN)


def test_a_server_stops_and_frees_its_port() -> None:
    server = start_moto()
    with server:
        name = server.create_bucket()
        assert name in {b["Name"] for b in server.client().list_buckets()["Buckets"]}
    assert server.process.returncode is not None
    with pytest.raises(OSError), socket.create_connection((server.host, server.port), timeout=1):
        pass


def test_the_server_dies_with_a_killed_test_process() -> None:
    """kill -9 of the process that started it: the server notices and stops."""
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from diracx.testing.s3 import start_moto; "
            "s = start_moto(); print(s.port, s.process.pid, flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None
    port, pid = map(int, parent.stdout.readline().split())
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 15
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # not our child: only a zombie check
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in "ZX"
    except OSError:
        return True
