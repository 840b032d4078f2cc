"""A worker's local cache of the blobs of an S3 store, bounded in size, LRU first out.

With an S3 store a worker materializes inputs from a :class:`LocalStore` under
``data_dir/cache/worker-N``: blobs are fetched into it once (concurrently, one
download per blob even when several builds want it at once) and reused by later
builds; outputs are ingested into it, then uploaded. When it grows past
``worker_cache_bytes`` the least recently used blobs are deleted first, but never
one that is *pinned*: a build pins what it is fetching, materializing or
uploading until it is done with it.

Each worker process owns one cache directory (an exclusive ``flock`` on
``worker-N.lock``, released by the kernel however the process ends), so its
in-memory index is the whole truth about that directory; a restarted worker
takes a free directory again, finds its blobs there, and orders them by their
modification time, which is touched on every use.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from diracx.core.canonical import is_digest
from diracx.core.store import LocalStore
from diracx.core.tree import load_tree, materialize_tree
from diracx.db.os import S3Store

log = logging.getLogger(__name__)

FETCH_CONCURRENCY = 8


class Pins:
    """The blobs one build holds in the cache; released when its ``with`` block ends."""

    def __init__(self, cache: BlobCache) -> None:
        self._cache = cache
        self._held: Counter[str] = Counter()

    def add(self, digests: Iterable[str]) -> list[str]:
        """Pin *digests* (in order, without duplicates); return them."""
        new = [d for d in dict.fromkeys(digests) if d not in self._held]
        with self._cache._lock:
            self._cache._pins.update(new)
        self._held.update(new)
        return new

    def release(self) -> None:
        with self._cache._lock:
            self._cache._pins.subtract(self._held)
            self._cache._pins = +self._cache._pins  # drop the zeros
        self._held.clear()


class BlobCache:
    """A bounded, LRU-evicted local copy of the blobs a worker uses from *remote*."""

    def __init__(
        self,
        root: Path,
        remote: S3Store,
        max_bytes: int,
        *,
        concurrency: int = FETCH_CONCURRENCY,
        lock_fd: int | None = None,
    ) -> None:
        self.local = LocalStore(root)
        self.remote = remote
        self.max_bytes = max_bytes
        self.concurrency = concurrency
        self.downloads = 0  # blobs fetched from the remote store
        self.uploads = 0  # blobs sent to it
        self._lock_fd = lock_fd
        self._lock = threading.Lock()
        self._index: OrderedDict[str, int] = OrderedDict()  # digest -> size, LRU first
        self._pins: Counter[str] = Counter()
        self._inflight: dict[str, Future[None]] = {}
        self._clock = 0  # the last use time written (ns), strictly increasing
        self.total = 0
        self.local.clear_tmp()  # writers that died with an earlier process of this cache
        self._scan()

    @classmethod
    def open(cls, base: Path, remote: S3Store, max_bytes: int) -> BlobCache:
        """The first cache directory ``base/worker-N`` that no live process holds."""
        base.mkdir(parents=True, exist_ok=True)
        n = 0
        while True:
            fd = os.open(base / f"worker-{n}.lock", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                n += 1
                continue
            return cls(base / f"worker-{n}", remote, max_bytes, lock_fd=fd)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def __repr__(self) -> str:
        return f"BlobCache({str(self.local.root)!r}, {self.total}/{self.max_bytes} bytes)"

    def _scan(self) -> None:
        found: list[tuple[int, str, int]] = []
        for sub in self.local.blobs.iterdir():
            for entry in os.scandir(sub):
                digest = sub.name + entry.name
                if is_digest(digest) and entry.is_file():
                    st = entry.stat()
                    found.append((st.st_mtime_ns, digest, st.st_size))
        for _, digest, size in sorted(found):
            self._index[digest] = size
            self.total += size

    # -- bookkeeping (under self._lock) ------------------------------------------------

    def _touch(self, digest: str) -> None:
        self._index.move_to_end(digest)
        # The order survives a restart as file times. Explicit, strictly increasing ones:
        # the kernel's own file times are coarse (a tick), so two uses would often tie.
        self._clock = max(time.time_ns(), self._clock + 1)
        with contextlib.suppress(OSError):
            os.utime(self.local.path(digest), ns=(self._clock, self._clock))

    def _record(self, digest: str, size: int) -> None:
        if digest not in self._index:
            self._index[digest] = size
            self.total += size
        self._touch(digest)

    # -- public ------------------------------------------------------------------------

    @contextlib.contextmanager
    def pinned(self) -> Iterator[Pins]:
        """``with cache.pinned() as pins: pins.add(digests)``: those stay until the end."""
        pins = Pins(self)
        try:
            yield pins
        finally:
            pins.release()

    def __contains__(self, digest: str) -> bool:
        with self._lock:
            return digest in self._index

    def lru(self) -> list[str]:
        """The cached digests, least recently used first."""
        with self._lock:
            return list(self._index)

    def fetch(self, digests: Iterable[str]) -> int:
        """Make *digests* present (pin them first); return how many were downloaded."""
        wanted = list(dict.fromkeys(digests))
        if len(wanted) <= 1:
            return sum(self._ensure(d) for d in wanted)
        with ThreadPoolExecutor(min(self.concurrency, len(wanted))) as pool:
            return sum(pool.map(self._ensure, wanted))

    def _ensure(self, digest: str) -> bool:
        with self._lock:
            if digest in self._index:
                self._touch(digest)
                return False
            future = self._inflight.get(digest)
            owner = future is None
            if future is None:
                future = self._inflight[digest] = Future()
        if not owner:  # another build is fetching it: wait for that download
            future.result()
            return False
        try:
            path = self.local.path(digest)
            downloaded = not path.is_file()  # an output ingested but not yet adopted
            size = self.remote.download_into(self.local, digest) if downloaded else 0
            if not downloaded:
                size = path.stat().st_size
            with self._lock:
                self._record(digest, size)
            future.set_result(None)
        except BaseException as exc:
            future.set_exception(exc)
            raise
        finally:
            with self._lock:
                self._inflight.pop(digest, None)
        if downloaded:
            with self._lock:
                self.downloads += 1
        return downloaded

    def adopt(self, digests: Iterable[str]) -> None:
        """Take into account blobs just ingested into ``self.local`` (pin them first).

        One that is missing (ingested earlier, found present, evicted since) came
        from the remote store or went there before it could be evicted: fetch it.
        """
        self.fetch(digests)

    def upload(self, digests: Iterable[str]) -> list[str]:
        """Send the blobs the remote store lacks (pinned, present); return them."""
        sent = self.remote.upload_from(self.local, digests)
        with self._lock:
            self.uploads += len(sent)
        return sent

    def trim(self) -> list[str]:
        """Evict least recently used, unpinned blobs until the cache fits; return them."""
        evicted: list[str] = []
        with self._lock:
            if self.total <= self.max_bytes:
                return evicted
            for digest, size in list(self._index.items()):
                if self.total <= self.max_bytes:
                    break
                if self._pins[digest] > 0:
                    continue
                self.local.path(digest).unlink(missing_ok=True)
                del self._index[digest]
                self.total -= size
                evicted.append(digest)
        if evicted:
            log.debug("cache %s evicted %d blobs", self.local.root, len(evicted))
        return evicted

    # -- what a build does with it -----------------------------------------------------

    def materialize(self, trees: Mapping[Path, str]) -> int:
        """Write each tree out at its path (``{dest: tree digest}``), fetching what is not
        cached yet (concurrently); return how many blobs were downloaded."""
        with self.pinned() as pins:
            downloaded = self.fetch(pins.add(trees.values()))
            loaded = {dest: load_tree(self.local, digest) for dest, digest in trees.items()}
            blobs = sorted(set().union(*(t.blob_digests() for t in loaded.values())))
            downloaded += self.fetch(pins.add(blobs))
            for dest, tree in loaded.items():
                materialize_tree(self.local, tree, dest)
        self.trim()
        return downloaded

    def publish(self, digests: Iterable[str]) -> list[str]:
        """Upload, of the blobs just ingested into the cache, those the remote store
        lacks (large ones in parts); return them. The build is reported done after."""
        with self.pinned() as pins:
            wanted = pins.add(digests)
            self.adopt(wanted)
            sent = self.upload(wanted)
        self.trim()
        return sent
