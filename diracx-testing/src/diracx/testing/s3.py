"""A real S3-compatible server for tests: moto's, in a process of its own.

``start_moto()`` runs ``moto.server.ThreadedMotoServer`` in a child process on a
free loopback port (the child binds port 0 and reports the port it got, so two
test runs never race for one). The child serves until its stdin closes: when
the test process ends, however it ends (even ``kill -9``), the pipe closes and
the server stops, so no server is ever left behind.

This module imports nothing of diracx (the layering rules): the settings it
hands out are plain ``DIRACX_*`` variables.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import selectors
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

HOST = "127.0.0.1"
REGION = "us-east-1"
# moto accepts any credentials; these are what the fixtures hand to DiracX
ACCESS_KEY_ID = "diracx-test-key"
SECRET_ACCESS_KEY = "diracx-test-secret"
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

_SERVER = f"""
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address={HOST!r}, port=0, verbose=False)
server.start()
print("PORT", server.get_host_and_port()[1], flush=True)
sys.stdin.buffer.read()  # EOF: the test process is done (or gone)
server.stop()
"""


class S3UnavailableError(RuntimeError):
    """moto's S3 server cannot be started here; the message says why."""


@dataclass
class MotoServer:
    """A running moto S3 server; ``client()`` is a boto3 client of it."""

    process: subprocess.Popen[bytes]
    port: int
    host: str = HOST
    _stopped: bool = field(default=False, repr=False)

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
        )

    def create_bucket(self, name: str | None = None) -> str:
        name = name or f"diracx-test-{secrets.token_hex(6)}"
        self.client().create_bucket(Bucket=name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Empty and remove a bucket (pending multipart uploads included)."""
        client = self.client()
        for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=name):
            for upload in page.get("Uploads", []):
                client.abort_multipart_upload(
                    Bucket=name, Key=upload["Key"], UploadId=upload["UploadId"]
                )
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=name)

    def settings_env(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """The ``DIRACX_*`` variables that make a DiracX service or worker use *bucket*."""
        url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        return {
            "DIRACX_STORE_URL": url,
            "DIRACX_S3_ENDPOINT_URL": self.endpoint_url,
            "DIRACX_S3_REGION": REGION,
            "DIRACX_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "DIRACX_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        }

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT)

    def __enter__(self) -> MotoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_moto(timeout: float = START_TIMEOUT) -> MotoServer:
    """Start moto's S3 server on a free loopback port; return once it answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET_ACCESS_KEY)
    try:
        process = subprocess.Popen(
            [sys.executable, "-c", _SERVER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a ^C in the test run does not reach it: stop() does
        )
    except OSError as exc:
        raise S3UnavailableError(f"cannot start moto's S3 server: {exc}") from exc
    assert process.stdout is not None
    line = _readline(process, timeout)
    if not line.startswith(b"PORT "):
        process.kill()
        process.wait()
        raise S3UnavailableError(
            f"moto's S3 server did not start (is moto[server] installed?): {line[:200]!r}"
        )
    process.stdout.close()
    return MotoServer(process=process, port=int(line.split()[1]))


def _readline(process: subprocess.Popen[bytes], timeout: float) -> bytes:
    """The child's first line of output, or b'' if it says nothing within *timeout*."""
    assert process.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(process.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            return b""
    return process.stdout.readline()


@contextlib.contextmanager
def bucket(server: MotoServer) -> Iterator[str]:
    """A fresh bucket, removed afterwards."""
    name = server.create_bucket()
    try:
        yield name
    finally:
        with contextlib.suppress(Exception):  # the server may be gone already
            server.delete_bucket(name)
