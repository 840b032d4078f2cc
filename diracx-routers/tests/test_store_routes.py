"""The store routes on the real app (SQLite and PostgreSQL): imports are checked by the
service itself, whatever the client did; lists, provenance, closures, sizes, verify."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from diracx.core.canonical import canonical_json
from diracx.core.derivation import Derivation, DrvInput, realization_ref
from diracx.core.store import LocalStore
from diracx.core.tree import Tree, TreeEntry

Put = Callable[[bytes], str]


def uploader(client: TestClient) -> Put:
    """Upload blobs as a client does: the caller's VO gets them."""

    def put(data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        r = client.put(f"/api/blobs/{digest}", content=data)
        assert r.status_code in (200, 201), r.text
        return digest

    return put


def record(
    put: Put | LocalStore, name: str, files: dict[str, bytes], **inputs: str
) -> dict[str, Any]:
    """A realization of a command stage called *name*: its blobs uploaded with *put*
    (or only put in a store: no VO has them), its inputs (name -> record rref, via their
    drefs) in the context."""
    if isinstance(put, LocalStore):
        put = put.put_bytes
    drv = Derivation(
        name=name,
        builder={"executor": "process", "argv": ["true"]},
        inputs={k: DrvInput(drv=v.split(":")[0]) for k, v in inputs.items()},
    )
    entries = {p: TreeEntry("file", put(b), len(b)) for p, b in files.items()}
    tree = Tree(entries)
    output = put(tree.manifest_bytes())
    context = {k: [v.split(":")[1]] for k, v in inputs.items()}
    return {
        "rref": realization_ref(drv.dref, context, output),
        "dref": drv.dref,
        "name": name,
        "body": canonical_json(drv.body()).decode(),
        "output": output,
        "context": context,
        "metrics": {"accuracy": 0.5},
        "log": put(f"log of {name}\n".encode()),
    }


def ref(rec: dict[str, Any]) -> str:
    return f"{rec['dref']}:{rec['rref']}"


def test_import_then_inspect(client: TestClient, store: LocalStore) -> None:
    put = uploader(client)
    base = record(put, "base", {"a.txt": b"shared\n"})
    top = record(put, "top", {"b.txt": b"shared\n", "c.txt": b"own\n"}, base=ref(base))
    got = client.post("/api/store/import", json={"realizations": [top, base]})
    assert got.status_code == 200, got.text
    assert sorted(got.json()["imported"]) == sorted([top["rref"], base["rref"]])
    again = client.post("/api/store/import", json={"realizations": [base]}).json()
    assert again == {"imported": [], "existing": [base["rref"]]}

    listed = client.get("/api/store/realizations").json()
    assert {r["rref"] for r in listed} == {top["rref"], base["rref"]}  # one timestamp
    assert [r["name"] for r in client.get("/api/store/realizations?name=top").json()] == ["top"]
    by_dref = client.get(f"/api/store/realizations?dref={base['dref']}").json()
    assert [r["rref"] for r in by_dref] == [base["rref"]]
    assert client.get("/api/store/realizations?dref=nope").status_code == 422
    by_prefix = client.get(f"/api/store/realizations?prefix={top['rref'][:7]}").json()
    assert [r["rref"] for r in by_prefix] == [top["rref"]]
    assert client.get("/api/store/realizations?prefix=0_%25").status_code == 422

    prov = client.get(f"/api/store/realizations/{top['rref']}/provenance").json()
    assert set(prov["realizations"]) == {top["rref"], base["rref"]}
    assert prov["realizations"][top["rref"]]["context"] == {"base": [base["rref"]]}

    closure = client.post("/api/store/closure", json={"rrefs": [top["rref"]]}).json()
    assert closure["roots"] == [top["rref"]]
    assert {r["rref"] for r in closure["realizations"]} == {top["rref"], base["rref"]}
    # two trees, two logs, three distinct files ("shared" is one blob)
    assert len(closure["blobs"]) == 2 + 2 + 2

    sizes = client.post("/api/store/sizes", json={"rrefs": []}).json()
    assert sizes["blobs"] == 6 and sizes["total"] == sum(closure["blobs"].values())
    assert {r["name"]: r["files"] for r in sizes["realizations"]} == {"base": 1, "top": 2}

    report = client.post("/api/store/verify").json()
    assert report["corrupt"] == [] and report["missing"] == []
    assert report["checked"] == 6

    # a blob removed behind the store's back is reported missing
    digest = base["log"]
    os.chmod(store.path(digest), 0o644)
    store.path(digest).unlink()
    report = client.post("/api/store/verify").json()
    assert report["missing"] == [{"digest": digest, "needed_by": f"the log of base {base['rref']}"}]


def test_the_service_checks_every_import(client: TestClient, store: LocalStore) -> None:
    put = uploader(client)
    base = record(put, "base", {"a.txt": b"a\n"})
    top = record(put, "top", {"b.txt": b"b\n"}, base=ref(base))

    def refused(recs: list[dict[str, Any]], message: str) -> None:
        got = client.post("/api/store/import", json={"realizations": recs})
        assert got.status_code == 400, got.text
        assert message in got.json()["detail"]

    refused([{**base, "rref": "1" * 64}], "is not its RRef")
    refused([{**base, "metrics": {}, "output": top["output"]}], "is not its RRef")
    refused([{**base, "body": base["body"].replace("true", "false")}], "does not hash to")
    refused([top], f"input realization {base['rref']} is neither in the import nor")
    missing = record(put, "gone", {"x.txt": b"not uploaded\n"})
    digest = Tree.from_bytes(store.read_bytes(missing["output"])).entries["x.txt"].digest
    assert digest is not None
    os.chmod(store.path(digest), 0o644)
    store.path(digest).unlink()
    refused([missing], "is not in the store: upload it first")
    # blobs the store holds but the caller's VO never sent (another VO's) are not enough
    refused([record(store, "theirs", {"y.txt": b"y\n"})], "is not in the store: upload it")
    assert client.get("/api/store/realizations").json() == []

    for path, body in (
        ("/api/store/closure", {"rrefs": ["0" * 64]}),
        ("/api/store/sizes", {"rrefs": ["0" * 64]}),
    ):
        got = client.post(path, json=body)
        assert got.status_code == 404 and "does not exist" in got.json()["detail"]
    got = client.post("/api/store/closure", json={"rrefs": ["xyz"]})
    assert got.status_code == 400 and "not an RRef" in got.json()["detail"]
    assert client.get(f"/api/store/realizations/{'0' * 64}/provenance").status_code == 404
