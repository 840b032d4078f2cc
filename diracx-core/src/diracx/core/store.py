"""The content-addressed blob store.

A blob is bytes addressed by their SHA-256. Blobs are written once: to a
temporary name first, then renamed into place, so a reader never sees a
half-written object. Every read is verified against the digest.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from diracx.core.canonical import check_is_digest
from diracx.core.exceptions import CorruptObjectError, ObjectNotFoundError

CHUNK_SIZE = 1 << 20  # large files are hashed and copied as a stream of 1 MiB chunks


class BlobStore(Protocol):
    """What the rest of DiracX needs from a store backend."""

    def has(self, digest: str) -> bool: ...

    def missing(self, digests: Iterable[str]) -> list[str]: ...

    def put_bytes(self, data: bytes) -> str: ...

    def put_file(self, path: Path | str, *, move: bool = False) -> tuple[str, int]: ...

    def put_stream(
        self, stream: BinaryIO, expected_digest: str | None = None
    ) -> tuple[str, int]: ...

    def writer(self) -> BlobWriter:
        """A writer for a blob that arrives in pieces (an HTTP upload, a download)."""
        ...

    def read_bytes(self, digest: str) -> bytes: ...

    def iter_chunks(self, digest: str) -> Iterator[bytes]: ...

    def copy_to(self, digest: str, dest: Path) -> None: ...

    def size(self, digest: str) -> int: ...


_buffers = threading.local()  # one read buffer per thread: no 1 MiB allocation per file


def _buffer() -> memoryview:
    view: memoryview | None = getattr(_buffers, "view", None)
    if view is None:
        view = _buffers.view = memoryview(bytearray(CHUNK_SIZE))
    return view


def _hash_fd(fd: int, out: int | None = None) -> tuple[str, int]:
    """SHA-256 and size of what is left to read from *fd*; with *out*, also written there.

    Read through a buffer, not a memory mapping: mapping is about a tenth faster on
    large files, but a file truncated meanwhile (a build's stray process still writing
    its outputs) would kill the whole worker with SIGBUS.
    """
    h = hashlib.sha256()
    size = 0
    view = _buffer()
    full = len(view)
    while n := os.readv(fd, [view]):
        chunk = view[:n]
        h.update(chunk)
        size += n
        while out is not None and chunk:
            chunk = chunk[os.write(out, chunk) :]
        if n < full:  # a regular file reads short only at its end: no read to see EOF
            break
    return h.hexdigest(), size


def hash_file(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a file, read as a stream."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return _hash_fd(fd)
    finally:
        os.close(fd)


class _Commits(Protocol):
    """A store that can take a finished temporary file as the blob *digest*."""

    def _commit(self, tmp: Path, digest: str) -> None: ...


def write_chunks_to(chunks: Iterable[bytes], dest: Path) -> None:
    """Write *chunks* to *dest*: beside it first, then renamed, so that a reader never
    sees part of it; nothing is left behind when the chunks fail (a corrupt blob)."""
    tmp = dest.with_name(f".{dest.name}.diracx-tmp")
    try:
        with open(tmp, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class BlobWriter:
    """Hashes and writes a blob to a temporary file; ``commit`` moves it into place.

    Leaving the ``with`` block without a commit (or with an error) removes the
    temporary file: nothing partial ever reaches the store.
    """

    def __init__(self, store: _Commits, file: BinaryIO, tmp: Path) -> None:
        self._store = store
        self._file = file
        self._tmp = tmp
        self._hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self._hash.update(chunk)
        self._file.write(chunk)
        self.size += len(chunk)

    def commit(self, expected_digest: str | None = None) -> tuple[str, int]:
        self._file.close()
        digest = self._hash.hexdigest()
        if expected_digest is not None and digest != expected_digest:
            self.abort()
            raise CorruptObjectError(
                f"content hashes to {digest}, not to the announced {expected_digest}"
            )
        self._store._commit(self._tmp, digest)
        return digest, self.size

    def abort(self) -> None:
        self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> BlobWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._tmp.exists():
            self.abort()


class LocalStore:
    """A store in a local directory: ``blobs/ab/cdef…`` files, read-only, never modified."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self.blobs = self.root / "blobs"
        self.tmp = self.root / "tmp"
        self._blobs = str(self.blobs)
        self.tmp.mkdir(parents=True, exist_ok=True)
        if not self.blobs.is_dir():
            self._make_fanout()

    def _make_fanout(self) -> None:
        """Create ``blobs/00`` to ``blobs/ff`` once, with the store: a directory creation
        costs as much as storing a few files, and ingesting outputs should not pay it."""
        staging = Path(tempfile.mkdtemp(dir=self.tmp, prefix="blobs-"))
        for i in range(256):
            (staging / f"{i:02x}").mkdir()
        try:
            os.rename(staging, self.blobs)
        except OSError:  # another process made the store first
            shutil.rmtree(staging, ignore_errors=True)
            if not self.blobs.is_dir():
                raise

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def path(self, digest: str) -> Path:
        check_is_digest(digest)
        return self.blobs / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def refresh(self, digest: str) -> bool:
        """Whether the blob is here; if so, its time is set to now. Garbage collection
        never takes a blob modified within its grace period: a writer that finds the
        blob already stored, or a client told it need not upload it, relies on it
        staying (see ``diracx.db.gc``)."""
        try:
            os.utime(self.path(digest))
        except FileNotFoundError:
            return False
        return True

    def missing(self, digests: Iterable[str]) -> list[str]:
        """The blobs not here; those that are get their time refreshed (``refresh``)."""
        return [d for d in dict.fromkeys(digests) if not self.refresh(d)]

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise ObjectNotFoundError(f"blob {digest} is not in the store") from None

    # -- writing -----------------------------------------------------------------

    def _tempfile(self) -> tuple[int, Path]:
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="blob-")
        return fd, Path(name)

    def writer(self) -> BlobWriter:
        """A writer for a blob that arrives in pieces (an HTTP upload, a download)."""
        fd, tmp = self._tempfile()
        return BlobWriter(self, os.fdopen(fd, "wb"), tmp)

    def _commit(self, tmp: Path, digest: str) -> None:
        """Move a finished temporary file into place (or drop it if the blob exists)."""
        dest = self.path(digest)
        if self.refresh(digest):
            tmp.unlink(missing_ok=True)
            return
        os.chmod(tmp, 0o444)
        dest.parent.mkdir(exist_ok=True)
        # rename is atomic: concurrent writers of the same digest write identical bytes.
        os.replace(tmp, dest)

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if self.refresh(digest):
            return digest
        fd, tmp = self._tempfile()
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            self._commit(tmp, digest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest

    def put_stream(self, stream: BinaryIO, expected_digest: str | None = None) -> tuple[str, int]:
        """Write a blob from a stream, hashing as it goes; refuse it if the digest differs."""
        fd, tmp = self._tempfile()
        h = hashlib.sha256()
        size = 0
        try:
            with os.fdopen(fd, "wb") as f:
                while chunk := stream.read(CHUNK_SIZE):
                    h.update(chunk)
                    f.write(chunk)
                    size += len(chunk)
            digest = h.hexdigest()
            if expected_digest is not None and digest != expected_digest:
                raise CorruptObjectError(
                    f"content hashes to {digest}, not to the announced {expected_digest}"
                )
            self._commit(tmp, digest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return digest, size

    def put_file(self, path: Path | str, *, move: bool = False) -> tuple[str, int]:
        """Store a file. With *move*, the file is renamed into the store (same filesystem).

        Either way one rename puts the whole blob in place, over a copy already there
        (the same bytes; the new one's time is now, as ``refresh`` would set it).
        """
        if not move:
            return self._copy_in(Path(path))
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            digest, size = _hash_fd(fd)
            # what the store keeps is read-only, and new: a build may have written the
            # file long ago, and garbage collection spares blobs younger than its grace
            os.fchmod(fd, 0o444)
            os.utime(fd)
        finally:
            os.close(fd)
        try:
            self._rename_in(str(path), digest)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            self._copy_in(Path(path))  # another filesystem: copy, then drop the file
            os.unlink(path)
        return digest, size

    def _rename_in(self, source: str, digest: str) -> None:
        """Rename *source* (read-only, hashed to *digest*) to its place in the store."""
        dest = f"{self._blobs}/{digest[:2]}/{digest[2:]}"  # digest: just computed
        try:
            os.replace(source, dest)
        except FileNotFoundError:
            if not os.path.exists(source):
                raise
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            os.replace(source, dest)

    def _copy_in(self, path: Path) -> tuple[str, int]:
        """Copy a file into the store: hashed while written to a temporary file, renamed."""
        src = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            fd, tmp = self._tempfile()
            try:
                try:
                    digest, size = _hash_fd(src, fd)
                    os.fchmod(fd, 0o444)
                finally:
                    os.close(fd)
                self._rename_in(str(tmp), digest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        finally:
            os.close(src)
        return digest, size

    # -- reading -----------------------------------------------------------------

    def _open(self, digest: str) -> BinaryIO:
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise ObjectNotFoundError(f"blob {digest} is not in the store") from None

    def iter_chunks(self, digest: str) -> Iterator[bytes]:
        """Yield the blob's bytes; the last step checks the digest and raises if corrupt."""
        h = hashlib.sha256()
        with self._open(digest) as f:
            while chunk := f.read(CHUNK_SIZE):
                h.update(chunk)
                yield chunk
        if h.hexdigest() != digest:
            raise CorruptObjectError(f"blob {digest} is corrupt: it hashes to {h.hexdigest()}")

    def read_bytes(self, digest: str) -> bytes:
        with self._open(digest) as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != digest:
            raise CorruptObjectError(f"blob {digest} is corrupt")
        return data

    def copy_to(self, digest: str, dest: Path) -> None:
        """Copy a verified blob to *dest* (written beside it first, then renamed)."""
        write_chunks_to(self.iter_chunks(digest), dest)

    def verify(self, digest: str) -> bool:
        h = hashlib.sha256()
        with self._open(digest) as f:
            while chunk := f.read(CHUNK_SIZE):
                h.update(chunk)
        return h.hexdigest() == digest

    def clear_tmp(self) -> None:
        """Remove temporary files left by writers that died."""
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True, exist_ok=True)
