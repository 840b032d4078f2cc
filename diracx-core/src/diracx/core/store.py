"""The content-addressed blob store.

A blob is bytes addressed by their SHA-256. Blobs are written once: to a
temporary name first, then renamed into place, so a reader never sees a
half-written object. Every read is verified against the digest.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
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

    def put_file(self, path: Path, *, move: bool = False) -> tuple[str, int]: ...

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


def hash_file(path: Path) -> tuple[str, int]:
    """SHA-256 and size of a file, read as a stream."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class _Commits(Protocol):
    """A store that can take a finished temporary file as the blob *digest*."""

    def _commit(self, tmp: Path, digest: str) -> None: ...


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
        self.blobs.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def path(self, digest: str) -> Path:
        check_is_digest(digest)
        return self.blobs / digest[:2] / digest[2:]

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def missing(self, digests: Iterable[str]) -> list[str]:
        return [d for d in dict.fromkeys(digests) if not self.has(d)]

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
        if dest.is_file():
            tmp.unlink(missing_ok=True)
            return
        os.chmod(tmp, 0o444)
        dest.parent.mkdir(exist_ok=True)
        # rename is atomic: concurrent writers of the same digest write identical bytes.
        os.replace(tmp, dest)

    def put_bytes(self, data: bytes) -> str:
        digest = hashlib.sha256(data).hexdigest()
        if self.has(digest):
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

    def put_file(self, path: Path, *, move: bool = False) -> tuple[str, int]:
        """Store a file. With *move*, the file is renamed into the store (same filesystem)."""
        if move:
            digest, size = hash_file(path)
            if self.has(digest):
                path.unlink()
                return digest, size
            fd, tmp = self._tempfile()
            os.close(fd)
            try:
                os.replace(path, tmp)
            except OSError:  # another filesystem: fall back to a copy
                tmp.unlink(missing_ok=True)
                return self.put_file(path)
            self._commit(tmp, digest)
            return digest, size
        with open(path, "rb") as f:
            return self.put_stream(f)

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
        tmp = dest.with_name(f".{dest.name}.diracx-tmp")
        try:
            with open(tmp, "wb") as out:
                for chunk in self.iter_chunks(digest):
                    out.write(chunk)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

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
