"""Many processes realizing the same derivations at once (issue 4, "Must show" 2).

Eight client processes, started together, each run the same two-stage pipeline of
deterministic builds on one DiracX (the embedded engine, then the distributed service
on PostgreSQL, Redis and S3). They must all get the same realizations, recorded once,
built by one job each, and the store must hold no corrupt or half-written object.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid

import pytest

from diracx.testing.distributed import DistributedService
from diracx.testing.engine import EngineProcess

pytestmark = pytest.mark.timeout(300)
CLIENTS = 8

CLIENT = r"""
import sys, time
from diracx.api import command, connect

salt, start_at = sys.argv[1], float(sys.argv[2])
data = command(
    "data",
    ["sh", "-c", "head -c 3000000 /dev/urandom > $OUT/noise && sha256sum $OUT/noise > $OUT/sum"],
    config={"salt": salt},
)
# not deterministic by itself: its RRef depends on the random bytes, so any second build
# would show up as a second realization
check = command(
    "check", ["sh", "-c", "cp $IN_DATA/sum $OUT/sum"], inputs={"data": data}, config={"salt": salt}
)
while time.time() < start_at:
    time.sleep(0.001)
with connect() as session:
    got = session.realize({"data": data, "check": check})
print(got["data"].rref, got["check"].rref)
"""


def db_rows(service: EngineProcess | DistributedService, sql: str) -> list[tuple[str, ...]]:
    if isinstance(service, DistributedService):
        return service.query(sql)
    with sqlite3.connect(service.data_dir / "diracx.db") as conn:
        return [tuple(str(v) for v in row) for row in conn.execute(sql)]


def test_eight_processes_realize_the_same_derivations_once(
    module_service: EngineProcess | DistributedService,
) -> None:
    salt = uuid.uuid4().hex
    start_at = time.time() + 3  # every client imported and ready by then
    clients = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, salt, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=os.environ.copy(),
        )
        for _ in range(CLIENTS)
    ]
    answers = []
    for client in clients:
        out, err = client.communicate(timeout=240)
        assert client.returncode == 0, err
        answers.append(out.split())
    assert all(a == answers[0] for a in answers), answers  # one realization for everyone

    per_stage = db_rows(
        module_service,
        "select d.name, count(distinct r.rref), count(distinct j.id) from derivations d "
        "join realizations r on r.dref = d.dref join jobs j on j.dref = d.dref "
        f"where d.body like '%{salt}%' group by d.name order by d.name",
    )
    assert per_stage == [("check", "1", "1"), ("data", "1", "1")]

    # every object of the store hashes to its name
    verify = subprocess.run(
        [sys.executable, "-m", "diracx.cli", "store", "verify"],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        timeout=120,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    if isinstance(module_service, DistributedService):
        assert module_service.bad_blobs() == []
