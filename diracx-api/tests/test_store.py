"""The store from the Python API: inspection, closures between two real engines, verify.

Inspection runs on the module's DiracX (the embedded engine, then the distributed
service with S3). Export/import and corruption use embedded engines of their own,
so that the stores they compare or damage are nobody else's.
"""

from __future__ import annotations

import io
import json
import os
import sqlite3
import stat
import tarfile
import uuid
from pathlib import Path
from typing import Any

import pytest

from diracx.api import PipelineFailedError, Stage, command, connect, host_dir
from diracx.api.store import BadReferenceError
from diracx.core.closure import MANIFEST_NAME, TamperedArchiveError
from diracx.core.exceptions import DiracxError
from diracx.testing.distributed import DistributedService
from diracx.testing.engine import EngineFactory, EngineProcess

pytestmark = pytest.mark.timeout(240)
Service = EngineProcess | DistributedService
UNKNOWN = "0" * 64


def sh(name: str, script: str, salt: str, **kwargs: Any) -> Stage:
    return command(name, ["sh", "-c", script], config={"salt": salt}, **kwargs)


def pipeline(salt: str, flavour: str = "plain") -> dict[str, Stage]:
    """base -> left, right -> top; left and right write one identical file (a shared blob)."""
    base = sh("base", f"echo building base; echo {flavour} > $OUT/base.txt", salt)
    left = sh(
        "left",
        'echo "the same bytes in both" > $OUT/shared.txt; cp $IN_BASE/base.txt $OUT/l.txt',
        salt,
        inputs={"base": base},
    )
    right = sh(
        "right",
        'echo "the same bytes in both" > $OUT/shared.txt; mkdir $OUT/empty',
        salt,
        inputs={"base": base},
    )
    top = sh(
        "top",
        f"echo top log line; cat $IN_LEFT/l.txt > $OUT/top.txt; echo {flavour} > $OUT/flavour",
        salt,
        inputs={"left": left, "right": right},
    )
    return {"base": base, "left": left, "right": right, "top": top}


@pytest.fixture
def salt() -> str:
    return uuid.uuid4().hex


# --------------------------------------------------------------------------- inspection


def test_ls_cat_path_diff_log(module_service: Service, salt: str) -> None:
    with connect() as s:
        first = s.realize(pipeline(salt, "one"))
        second = s.realize(pipeline(salt, "two")["top"])
        top1, top2 = first["top"], second
        store = s.store

        # ls: newest first, filtered by stage name or DRef
        tops = store.ls(name="top", limit=10_000)
        rrefs = [r.rref for r in tops]
        assert rrefs.index(top2.rref) < rrefs.index(top1.rref)
        assert [r.rref for r in store.ls(dref=top1.dref)] == [top1.rref]
        assert store.ls(name=f"nothing-{salt}") == []

        # files of one output, and one file
        assert sorted(store.tree(top1.rref).entries) == ["flavour", "top.txt"]
        assert store.cat(top1.rref, "flavour") == b"one\n"
        assert store.cat(top2.rref, "top.txt") == b"two\n"
        # a unique prefix of an RRef will do
        assert store.resolve(top1.rref[:10]) == top1.rref
        assert store.cat(top2.rref[:12], "top.txt") == b"two\n"
        with pytest.raises(DiracxError, match="no realization's RRef starts with ffffff00ff"):
            store.cat("ffffff00ff", "top.txt")
        with pytest.raises(BadReferenceError, match="at least 6"):
            store.deps(top1.rref[:5])
        with pytest.raises(DiracxError, match=r"'nope' in top .*no such file; its files: flavour"):
            store.cat(top1.rref, "nope")
        right = first["right"]
        with pytest.raises(DiracxError, match="a directory"):
            store.cat(right.rref, "empty")

        # path: a read-only local copy, made once
        where = store.path(top1.rref)
        assert where == store.paths_dir / top1.rref
        assert (where / "flavour").read_text() == "one\n"
        assert not os.access(where, os.W_OK) or os.geteuid() == 0
        assert not stat.S_IMODE((where / "flavour").stat().st_mode) & 0o222
        assert store.path(top1.rref) == where
        assert (store.path(right.rref) / "empty").is_dir()

        # diff
        changes = {(c.path, c.change) for c in store.diff(top1.rref, top2.rref)}
        assert changes == {("flavour", "changed"), ("top.txt", "changed")}
        changes = {(c.path, c.change) for c in store.diff(first["left"].rref, right.rref)}
        assert changes == {("l.txt", "removed"), ("empty", "added")}
        assert store.diff(top1.rref, top1.rref) == []

        # log, by RRef or by job id
        assert "top log line" in store.log(top1.rref)
        job_id = store.info(first["base"].rref).job_id
        if job_id is not None:  # built by this test: it has a job
            assert "building base" in store.log(job_id)


def test_deps_and_du(module_service: Service, salt: str, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.txt").write_text(salt)
    with connect() as s:
        got = s.realize(pipeline(salt))
        reader = sh(
            "reader",
            "cat $IN_DATA/x.txt $IN_TOP/top.txt > $OUT/both",
            salt,
            inputs={"data": host_dir(tmp_path / "data"), "top": pipeline(salt)["top"]},
        )
        read = s.realize(reader)
        prov = s.store.deps(read.rref)
        assert set(prov.realizations) == {read.rref} | {got[n].rref for n in got}
        (tree,) = prov.trees[read.rref].values()
        assert list(prov.trees[read.rref]) == ["data"] and len(tree) == 64
        assert prov.realizations[read.rref].context == {"top": [got["top"].rref]}

        prov = s.store.deps(got["top"].rref)
        assert prov.root == got["top"].rref
        assert set(prov.realizations) == {got[n].rref for n in ("base", "left", "right", "top")}
        top = prov.realizations[got["top"].rref]
        assert top.context == {"left": [got["left"].rref], "right": [got["right"].rref]}
        assert prov.realizations[got["left"].rref].context == {"base": [got["base"].rref]}
        assert prov.realizations[got["base"].rref].context == {}

        report = s.store.du([got["left"].rref, got["right"].rref])
        sizes = {r.name: r for r in report.realizations}
        assert sizes["left"].files == 2 and sizes["right"].files == 1
        # the shared file counts once in the total
        shared = len(b"the same bytes in both\n")
        assert report.total == sizes["left"].size + sizes["right"].size - shared
        everything = s.store.du()
        assert {got["top"].rref, got["base"].rref} <= {r.rref for r in everything.realizations}
        assert everything.total >= report.total


def test_the_log_of_a_failed_build(module_service: Service, salt: str) -> None:
    with connect() as s:
        with pytest.raises(PipelineFailedError) as info:
            s.realize(sh("broken", "echo about to break; exit 3", salt))
        (stage,) = info.value.result.failed()
        assert stage.job_id is not None and stage.rref is None
        assert "about to break" in s.store.log(stage.job_id)


def test_unknown_and_malformed_references(module_service: Service) -> None:
    with connect() as s:
        for call in (
            lambda: s.store.info(UNKNOWN),
            lambda: s.store.cat(UNKNOWN, "x"),
            lambda: s.store.path(UNKNOWN),
            lambda: s.store.deps(UNKNOWN),
            lambda: s.store.du([UNKNOWN]),
            lambda: s.store.log(UNKNOWN),
            lambda: s.store.export([UNKNOWN], "/nonexistent/x.tar"),
        ):
            with pytest.raises(DiracxError, match=f"realization {UNKNOWN} does not exist"):
                call()
        with pytest.raises(DiracxError, match="job 999999999 does not exist"):
            s.store.log(999_999_999)
        for call in (lambda: s.store.cat("abc", "x"), lambda: s.store.log("nope")):
            with pytest.raises(BadReferenceError, match="not an RRef"):
                call()


# --------------------------------------------------------------------------- closures


def blob_bytes(engine: EngineProcess, digest: str) -> bytes:
    return (engine.data_dir / "store" / "blobs" / digest[:2] / digest[2:]).read_bytes()


def realization_rows(engine: EngineProcess) -> list[tuple[Any, ...]]:
    with sqlite3.connect(engine.data_dir / "diracx.db") as conn:
        return conn.execute(
            "select rref, dref, output, context, metrics, log from realizations order by rref"
        ).fetchall()


def store_files(engine: EngineProcess) -> list[str]:
    return sorted(p.name for p in (engine.data_dir / "store" / "blobs").rglob("*") if p.is_file())


@pytest.fixture
def two_engines(engine_factory: EngineFactory, tmp_path: Path) -> tuple[EngineProcess, ...]:
    return engine_factory.start(), engine_factory.start(tmp_path / "other")


def test_export_import_between_two_engines(
    two_engines: tuple[EngineProcess, EngineProcess], salt: str, tmp_path: Path
) -> None:
    a, b = two_engines
    stages = pipeline(salt)
    with connect(a.url, a.token) as sa:
        top = sa.realize(stages["top"])
        closure = sa.store.export([top.rref], tmp_path / "closure.tar")
        assert len(closure.realizations) == 4
        sa.store.export([top.rref], tmp_path / "again.tar")
        prov_a = sa.store.deps(top.rref)
    # the same closure always makes the same archive
    assert (tmp_path / "closure.tar").read_bytes() == (tmp_path / "again.tar").read_bytes()

    with connect(b.url, b.token) as sb:
        done = sb.store.import_closure(tmp_path / "closure.tar")
        assert done.roots == [top.rref]
        assert len(done.result.imported) == 4 and done.result.existing == []
        assert done.uploaded == len(closure.blobs)
        prov_b = sb.store.deps(top.rref)
        assert sb.store.cat(top.rref, "top.txt") == b"plain\n"
        # imported twice: nothing new
        again = sb.store.import_closure(tmp_path / "closure.tar")
        assert again.result.imported == [] and len(again.result.existing) == 4
        assert again.uploaded == 0
        # the same pipeline on the other engine reuses every imported realization
        _, result = sb.run(stages["top"])
        assert result.ok and len(result.cached()) == 4 and result.built() == []

    # byte-identical realizations: same rows (RRef, DRef, output, context, metrics, log)...
    rows_a = realization_rows(a)
    assert realization_rows(b) == rows_a
    local = {"job_id", "created"}  # what belongs to the store that recorded it
    assert {r: i.model_dump(exclude=local) for r, i in prov_a.realizations.items()} == {
        r: i.model_dump(exclude=local) for r, i in prov_b.realizations.items()
    }
    # ...and the same bytes for every blob of the closure
    for digest in closure.blobs:
        assert blob_bytes(b, digest) == blob_bytes(a, digest)


def rewrite(archive: Path, dest: Path, change: Any) -> None:
    """Copy a closure archive, passing each member's (name, bytes) through *change*."""
    with tarfile.open(archive) as src, tarfile.open(dest, "w") as out:
        for member in src:
            f = src.extractfile(member)
            assert f is not None
            data = change(member.name, f.read())
            info = tarfile.TarInfo(member.name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))


def test_a_tampered_archive_is_refused_whole(
    two_engines: tuple[EngineProcess, EngineProcess], salt: str, tmp_path: Path
) -> None:
    a, b = two_engines
    with connect(a.url, a.token) as sa:
        top = sa.realize(pipeline(salt)["top"])
        closure = sa.store.export([top.rref], tmp_path / "closure.tar")
    victim = next(d for d, size in closure.blobs.items() if size > 0)

    def flip_byte(name: str, data: bytes) -> bytes:
        if name == f"blobs/{victim}":
            return bytes([data[0] ^ 1]) + data[1:]
        return data

    def other_output(name: str, data: bytes) -> bytes:
        if name != MANIFEST_NAME:
            return data
        doc = json.loads(data)
        recs = doc["realizations"]
        recs[0]["output"] = recs[1]["output"]  # a valid digest, in the archive, but not its own
        return json.dumps(doc).encode()

    def forged_context(name: str, data: bytes) -> bytes:
        if name != MANIFEST_NAME:
            return data
        doc = json.loads(data)
        for rec in doc["realizations"]:
            if rec["context"]:
                first = next(iter(rec["context"]))
                rec["context"][first] = ["1" * 64]
                break
        return json.dumps(doc).encode()

    def dropped_blob(name: str, data: bytes) -> bytes:
        return b"" if name == f"blobs/{victim}" else data

    cases = {
        flip_byte: "does not hash to its name",
        other_output: "is not its RRef",
        forged_context: "is not its RRef",
    }
    (tmp_path / "garbage.tar").write_bytes(b"not a tar at all" * 100)
    with connect(b.url, b.token) as sb:
        for change, message in cases.items():
            bad = tmp_path / f"{change.__name__}.tar"
            rewrite(tmp_path / "closure.tar", bad, change)
            with pytest.raises(TamperedArchiveError, match=message) as info:
                sb.store.import_closure(bad)
            assert "nothing was imported" in str(info.value)
        with pytest.raises(TamperedArchiveError, match="does not hash to its name"):
            rewrite(tmp_path / "closure.tar", tmp_path / "dropped.tar", dropped_blob)
            sb.store.import_closure(tmp_path / "dropped.tar")
        with pytest.raises(TamperedArchiveError, match="not a closure archive"):
            sb.store.import_closure(tmp_path / "garbage.tar")
        assert sb.store.ls() == []
    assert realization_rows(b) == []
    assert store_files(b) == []  # not a single blob was uploaded


# --------------------------------------------------------------------------- verify


def corrupt(engine: EngineProcess, digest: str) -> None:
    path = engine.data_dir / "store" / "blobs" / digest[:2] / digest[2:]
    os.chmod(path, 0o644)
    data = path.read_bytes()
    path.write_bytes(bytes([data[0] ^ 0x20]) + data[1:])
    os.chmod(path, 0o444)


def test_verify_finds_a_corrupt_blob_which_is_never_served_nor_used(
    embedded_engine: EngineProcess, salt: str
) -> None:
    engine = embedded_engine
    made = sh(
        "made",
        "echo precious data > $OUT/data.txt; echo other > $OUT/ok.txt; "
        "head -c 3000000 /dev/zero | tr '\\0' a > $OUT/big.bin",  # streamed, not sent whole
        salt,
    )
    with connect() as s:
        got = s.realize(made)
        report = s.store.verify()
        assert report.ok and report.checked >= 4 and report.corrupt == []

        tree = s.store.tree(got.rref)
        bad = tree.entries["data.txt"].digest
        assert bad is not None
        s.async_session.cache.path(bad).unlink(missing_ok=True)  # not already fetched
        corrupt(engine, bad)

        big = tree.entries["big.bin"].digest
        assert big is not None
        s.async_session.cache.path(big).unlink(missing_ok=True)
        corrupt(engine, big)

        report = s.store.verify()
        assert sorted(report.corrupt) == sorted([bad, big]) and not report.ok

        # a download gets a clear error, not the bad bytes
        with pytest.raises(DiracxError, match=f"blob {bad} is corrupt"):
            s.store.cat(got.rref, "data.txt")
        assert s.store.cat(got.rref, "ok.txt") == b"other\n"
        assert not s.async_session.cache.has(bad)
        # a large blob (streamed) is checked before it is sent
        with pytest.raises(DiracxError, match=f"blob {big} is corrupt: run dirac store verify"):
            s.store.cat(got.rref, "big.bin")
        assert not s.async_session.cache.has(big)

        # a build that takes it as input fails, saying why
        user = sh("user", "cat $IN_MADE/data.txt > $OUT/copy.txt", salt, inputs={"made": made})
        with pytest.raises(PipelineFailedError, match=f"blob ({bad}|{big}) is corrupt"):
            s.realize(user)


def test_import_into_the_module_service(
    module_service: Service, engine_factory: EngineFactory, salt: str, tmp_path: Path
) -> None:
    """From an embedded engine into the module's DiracX (with S3 when distributed: the
    blobs go by upload plans, presigned URLs to the bucket)."""
    source = engine_factory.start()
    with connect(source.url, source.token) as sa:
        top = sa.realize(pipeline(salt, "travels")["top"])
        closure = sa.store.export([top.rref], tmp_path / "closure.tar")
    with connect(module_service.url, module_service.token) as s:
        done = s.store.import_closure(tmp_path / "closure.tar")
        assert len(done.result.imported) == 4
        assert s.store.cat(top.rref, "flavour") == b"travels\n"
        assert set(s.store.deps(top.rref).realizations) == {r.rref for r in closure.realizations}
        again = s.store.export([top.rref], tmp_path / "back.tar")
        assert again == closure
        # verify walks the whole store: the local directory, or the bucket's listing
        report = s.store.verify()
        assert report.ok and report.checked >= len(closure.blobs)
    assert (tmp_path / "back.tar").read_bytes() == (tmp_path / "closure.tar").read_bytes()
