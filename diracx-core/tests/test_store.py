"""The content-addressed blob store: written once, renamed into place, verified on read."""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import stat
import tracemalloc
from pathlib import Path

import pytest

from diracx.core.exceptions import CorruptObjectError, ObjectNotFoundError
from diracx.core.store import CHUNK_SIZE, LocalStore, hash_file


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_files(store: LocalStore) -> list[Path]:
    return sorted(p for p in store.blobs.rglob("*") if p.is_file())


def tmp_files(store: LocalStore) -> list[Path]:
    return sorted(store.tmp.iterdir())


def corrupt(path: Path, data: bytes) -> None:
    """Overwrite a (read-only) blob file in place, as a disk error or a careless admin would."""
    os.chmod(path, 0o644)
    path.write_bytes(data)
    os.chmod(path, 0o444)


# -- round trip ---------------------------------------------------------------------------------


def test_put_and_read_round_trip(store: LocalStore) -> None:
    data = b"hello, store\x00\xff"
    digest = store.put_bytes(data)
    assert digest == sha(data)
    assert store.has(digest)
    assert store.read_bytes(digest) == data
    assert b"".join(store.iter_chunks(digest)) == data
    assert store.size(digest) == len(data)
    assert store.verify(digest)


def test_blob_layout_and_mode(store: LocalStore) -> None:
    digest = store.put_bytes(b"layout")
    path = store.blobs / digest[:2] / digest[2:]
    assert store.path(digest) == path
    assert path.read_bytes() == b"layout"
    assert stat.S_IMODE(path.stat().st_mode) == 0o444  # never modified in place
    assert tmp_files(store) == []


def test_empty_blob(store: LocalStore) -> None:
    digest = store.put_bytes(b"")
    assert digest == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert store.read_bytes(digest) == b""
    assert list(store.iter_chunks(digest)) == []


def test_put_is_idempotent(store: LocalStore) -> None:
    first = store.put_bytes(b"same")
    second = store.put_bytes(b"same")
    digest, size = store.put_stream(io.BytesIO(b"same"))
    assert first == second == digest
    assert size == 4
    assert blob_files(store) == [store.path(first)]
    assert tmp_files(store) == []


def test_missing_lists_each_absent_digest_once(store: LocalStore) -> None:
    present = store.put_bytes(b"present")
    absent = sha(b"absent")
    assert store.missing([present, absent, absent, present]) == [absent]
    assert store.missing([]) == []


def test_absent_blob_is_reported(store: LocalStore) -> None:
    absent = sha(b"never stored")
    assert not store.has(absent)
    with pytest.raises(ObjectNotFoundError, match=absent):
        store.read_bytes(absent)
    with pytest.raises(ObjectNotFoundError):
        list(store.iter_chunks(absent))
    with pytest.raises(ObjectNotFoundError):
        store.size(absent)


@pytest.mark.parametrize("bad", ["../../etc/passwd", "a" * 63, "A" * 64, "a" * 64 + "\n", ""])
def test_malformed_digests_never_reach_the_filesystem(store: LocalStore, bad: str) -> None:
    with pytest.raises(ValueError):
        store.path(bad)
    with pytest.raises(ValueError):
        store.has(bad)
    with pytest.raises(ValueError):
        store.read_bytes(bad)


def test_store_survives_reopening(tmp_path: Path) -> None:
    digest = LocalStore(tmp_path / "s").put_bytes(b"persistent")
    assert LocalStore(tmp_path / "s").read_bytes(digest) == b"persistent"


# -- verification on read -----------------------------------------------------------------------


@pytest.mark.parametrize("damage", [b"hellO", b"hell", b"hello!", b""])
def test_corrupt_blob_is_never_returned(store: LocalStore, damage: bytes) -> None:
    digest = store.put_bytes(b"hello")
    corrupt(store.path(digest), damage)
    with pytest.raises(CorruptObjectError, match=digest):
        store.read_bytes(digest)
    assert not store.verify(digest)


def test_iter_chunks_raises_at_the_end_of_a_corrupt_blob(store: LocalStore) -> None:
    digest = store.put_bytes(b"x" * (3 * CHUNK_SIZE // 2))
    corrupt(store.path(digest), b"y" * (3 * CHUNK_SIZE // 2))
    with pytest.raises(CorruptObjectError):
        for _ in store.iter_chunks(digest):
            pass


def test_copy_to_leaves_nothing_behind_for_a_corrupt_blob(
    store: LocalStore, tmp_path: Path
) -> None:
    digest = store.put_bytes(b"good bytes")
    corrupt(store.path(digest), b"evil bytes")
    dest_dir = tmp_path / "dest"
    dest_dir.mkdir()
    with pytest.raises(CorruptObjectError):
        store.copy_to(digest, dest_dir / "file")
    assert list(dest_dir.iterdir()) == []  # neither the file nor its temporary


def test_copy_to_writes_a_verified_copy(store: LocalStore, tmp_path: Path) -> None:
    digest = store.put_bytes(b"copy me")
    store.copy_to(digest, tmp_path / "file")
    assert (tmp_path / "file").read_bytes() == b"copy me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "store"]


# -- put_stream ---------------------------------------------------------------------------------


def test_put_stream_with_the_right_digest(store: LocalStore) -> None:
    data = os.urandom(3 * CHUNK_SIZE + 17)
    digest, size = store.put_stream(io.BytesIO(data), expected_digest=sha(data))
    assert (digest, size) == (sha(data), len(data))
    assert store.read_bytes(digest) == data


def test_put_stream_with_a_wrong_digest_leaves_nothing(store: LocalStore) -> None:
    data = b"what was really sent"
    announced = sha(b"what the client announced")
    with pytest.raises(CorruptObjectError, match=announced):
        store.put_stream(io.BytesIO(data), expected_digest=announced)
    assert not store.has(announced)
    assert not store.has(sha(data))
    assert blob_files(store) == []
    assert tmp_files(store) == []


def test_put_stream_that_fails_midway_leaves_nothing(store: LocalStore) -> None:
    class Broken(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise ConnectionError("client went away")
            return b"z" * 1000

    with pytest.raises(ConnectionError):
        store.put_stream(Broken())  # type: ignore[arg-type]
    assert blob_files(store) == []
    assert tmp_files(store) == []


# -- writer (a blob that arrives in pieces) --------------------------------------------------------


def test_writer_round_trip(store: LocalStore) -> None:
    with store.writer() as w:
        for piece in (b"in ", b"pieces", b""):
            w.write(piece)
        digest, size = w.commit(expected_digest=sha(b"in pieces"))
    assert (digest, size) == (sha(b"in pieces"), 9)
    assert store.read_bytes(digest) == b"in pieces"
    assert tmp_files(store) == []


def test_writer_with_a_wrong_digest_leaves_nothing(store: LocalStore) -> None:
    with store.writer() as w:
        w.write(b"actual")
        with pytest.raises(CorruptObjectError):
            w.commit(expected_digest=sha(b"announced"))
    assert blob_files(store) == []
    assert tmp_files(store) == []


def test_writer_abandoned_or_failing_leaves_nothing(store: LocalStore) -> None:
    with store.writer() as w:
        w.write(b"never committed")
    with pytest.raises(RuntimeError), store.writer() as w:
        w.write(b"half")
        raise RuntimeError("upload interrupted")
    assert blob_files(store) == []
    assert tmp_files(store) == []


# -- put_file -----------------------------------------------------------------------------------


def test_put_file_copies_by_default(store: LocalStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"keep me")
    digest, size = store.put_file(src)
    assert (digest, size) == (sha(b"keep me"), 7)
    assert src.read_bytes() == b"keep me"
    assert store.read_bytes(digest) == b"keep me"


def test_put_file_move_renames_into_the_store(store: LocalStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.write_bytes(b"move me")
    os.chmod(src, 0o664)
    inode = src.stat().st_ino
    digest, size = store.put_file(src, move=True)
    assert (digest, size) == (sha(b"move me"), 7)
    assert not src.exists()
    blob = store.path(digest)
    assert blob.stat().st_ino == inode  # renamed, not copied
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    assert store.read_bytes(digest) == b"move me"
    assert tmp_files(store) == []


def test_put_file_move_of_known_content_drops_the_file(store: LocalStore, tmp_path: Path) -> None:
    digest = store.put_bytes(b"known")
    src = tmp_path / "src"
    src.write_bytes(b"known")
    assert store.put_file(src, move=True) == (digest, 5)
    assert not src.exists()
    assert blob_files(store) == [store.path(digest)]
    assert tmp_files(store) == []


# -- large files are streamed -------------------------------------------------------------------


def test_large_file_is_hashed_and_stored_as_a_stream(store: LocalStore, tmp_path: Path) -> None:
    size = 64 << 20
    block = os.urandom(1 << 20)
    expected = hashlib.sha256()
    src = tmp_path / "large"
    with open(src, "wb") as f:
        for i in range(size // len(block)):
            chunk = i.to_bytes(8, "big") + block[8:]
            expected.update(chunk)
            f.write(chunk)
    tracemalloc.start()
    try:
        assert hash_file(src) == (expected.hexdigest(), size)
        digest, stored = store.put_file(src)
        store.copy_to(digest, tmp_path / "copy")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (digest, stored) == (expected.hexdigest(), size)
    assert store.size(digest) == size
    assert (tmp_path / "copy").stat().st_size == size
    # a 64 MiB file went through a few 1 MiB buffers, never through memory whole
    assert peak < 8 << 20, f"peak Python memory {peak} bytes: the file was not streamed"


@pytest.mark.parametrize(
    "size", [0, 1, CHUNK_SIZE - 1, CHUNK_SIZE, CHUNK_SIZE + 1, 2 * CHUNK_SIZE, 2 * CHUNK_SIZE + 5]
)
@pytest.mark.parametrize("move", [False, True])
def test_every_byte_is_hashed_around_the_read_size(
    store: LocalStore, tmp_path: Path, size: int, move: bool
) -> None:
    """A short read ends the file (no read to see EOF): sizes at and around the read
    buffer's lose no byte and read none twice."""
    data = os.urandom(size)
    src = tmp_path / "f"
    src.write_bytes(data)
    assert hash_file(src) == (sha(data), size)
    assert store.put_file(src, move=move) == (sha(data), size)
    assert store.read_bytes(sha(data)) == data


# -- concurrent writers -------------------------------------------------------------------------

PAYLOADS = [bytes([i]) * (256 << 10) + f"payload {i}".encode() for i in range(12)]


def _writer(
    root: str, index: int, barrier: multiprocessing.synchronize.Barrier, scratch: str
) -> None:
    store = LocalStore(root)
    barrier.wait(timeout=30)
    for n, data in enumerate(PAYLOADS):
        way = (index + n) % 3
        if way == 0:
            assert store.put_bytes(data) == sha(data)
        elif way == 1:
            assert store.put_stream(io.BytesIO(data), expected_digest=sha(data))[0] == sha(data)
        else:
            src = Path(scratch) / f"{index}-{n}"
            src.write_bytes(data)
            assert store.put_file(src, move=True)[0] == sha(data)
        # others may be writing the same blob right now: a reader must never see it half-written
        for earlier in PAYLOADS[: n + 1]:
            assert store.read_bytes(sha(earlier)) == earlier


def test_concurrent_writers_of_the_same_content(store: LocalStore, tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(8)
    scratch = tmp_path / "scratch"  # on the store's filesystem, so move=True renames
    scratch.mkdir()
    procs = [
        ctx.Process(target=_writer, args=(str(store.root), i, barrier, str(scratch)))
        for i in range(8)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * 8
    assert blob_files(store) == sorted(store.path(sha(d)) for d in PAYLOADS)
    for data in PAYLOADS:
        assert store.read_bytes(sha(data)) == data
    assert tmp_files(store) == []
    assert list(scratch.iterdir()) == []


def test_clear_tmp_removes_leftovers(store: LocalStore) -> None:
    (store.tmp / "blob-dead-writer").write_bytes(b"partial")
    store.clear_tmp()
    assert tmp_files(store) == []
    assert store.tmp.is_dir()


def test_a_new_store_has_its_fanout_directories(tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "new")
    assert sorted(p.name for p in store.blobs.iterdir()) == [f"{i:02x}" for i in range(256)]
    assert not list(store.tmp.iterdir())  # the staging directory was renamed into place
    LocalStore(tmp_path / "new")  # opening it again changes nothing
    assert len(list(store.blobs.iterdir())) == 256
