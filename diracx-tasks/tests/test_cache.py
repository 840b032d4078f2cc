"""The worker's blob cache over an S3 store (moto's real server): bounded, LRU, reused."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from diracx.core.exceptions import CorruptObjectError
from diracx.core.settings import ServiceSettings
from diracx.core.tree import ingest_directory
from diracx.db.os import S3Store, open_store
from diracx.tasks.cache import BlobCache

MiB = 1024 * 1024


@pytest.fixture
def remote(s3_store_url: dict[str, str], tmp_path: Path) -> S3Store:
    fields: dict[str, Any] = {k.removeprefix("DIRACX_").lower(): v for k, v in s3_store_url.items()}
    settings = ServiceSettings(
        data_dir=tmp_path / "data",
        s3_multipart_threshold=6 * MiB,
        s3_multipart_part_size=5 * MiB,
        **fields,
    )
    store = open_store(settings)
    assert isinstance(store, S3Store)
    return store


class Calls:
    """The keys of the S3 operations a client sends, by operation (GetObject...)."""

    def __init__(self, store: S3Store) -> None:
        self.seen: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        store.client.meta.events.register("provide-client-params.s3.*", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        with self._lock:
            self.seen.setdefault(model.name, []).append(params.get("Key", ""))

    def __call__(self, operation: str) -> list[str]:
        return self.seen.get(operation, [])


@pytest.fixture
def calls(remote: S3Store) -> Iterator[Calls]:
    c = Calls(remote)
    yield c
    remote.client.meta.events.unregister("provide-client-params.s3.*", c._record)


def blobs(remote: S3Store, n: int, size: int) -> list[str]:
    return [remote.put_bytes(os.urandom(size)) for _ in range(n)]


def test_fetched_blobs_are_reused_not_downloaded_again(
    remote: S3Store, tmp_path: Path, calls: Calls
) -> None:
    cache = BlobCache(tmp_path / "cache", remote, max_bytes=10 * MiB)
    digests = blobs(remote, 5, 1000)
    with cache.pinned() as pins:
        assert cache.fetch(pins.add(digests)) == 5
    assert sorted(calls("GetObject")) == sorted(remote.key(d) for d in digests)
    with cache.pinned() as pins:
        assert cache.fetch(pins.add(digests)) == 0  # all cached
    assert len(calls("GetObject")) == 5
    assert cache.downloads == 5 and cache.total == 5000
    for d in digests:
        assert cache.local.read_bytes(d) == remote.read_bytes(d)


def test_the_cache_is_bounded_and_evicts_the_least_recently_used(
    remote: S3Store, tmp_path: Path
) -> None:
    cache = BlobCache(tmp_path / "cache", remote, max_bytes=3000)
    a, b, c, d, e = blobs(remote, 5, 1000)
    for digest in (a, b, c):
        cache.fetch([digest])
    assert cache.lru() == [a, b, c] and cache.trim() == []  # 3000 bytes: it fits
    cache.fetch([a])  # a is used again: b is now the least recently used
    assert cache.lru() == [b, c, a]
    cache.fetch([d])
    assert cache.trim() == [b]
    assert cache.lru() == [c, a, d] and cache.total == 3000
    assert not cache.local.has(b)  # the file is gone, not only the index entry
    cache.fetch([e])
    cache.fetch([c])
    assert cache.trim() == [a]
    assert cache.lru() == [d, e, c]
    assert sorted(p.name for p in cache.local.blobs.rglob("*") if p.is_file()) == sorted(
        x[2:] for x in (c, d, e)
    )


def test_pinned_blobs_are_never_evicted(remote: S3Store, tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", remote, max_bytes=1500)
    a, b, c = blobs(remote, 3, 1000)
    with cache.pinned() as pins:
        pins.add([a, b])  # a build needs more than the whole budget
        cache.fetch([a])  # one by one: a concurrent fetch records them in any order
        cache.fetch([b])
        assert cache.trim() == []  # both pinned: over budget for a while
        assert cache.total == 2000
        cache.fetch([c])  # another build's blob, unpinned
        assert cache.trim() == [c]
    assert cache.trim() == [a]  # released: back within the budget, oldest first
    assert cache.lru() == [b]


def test_one_download_when_builds_want_the_same_blob_at_once(
    remote: S3Store, tmp_path: Path, calls: Calls
) -> None:
    cache = BlobCache(tmp_path / "cache", remote, max_bytes=100 * MiB)
    (digest,) = blobs(remote, 1, 3 * MiB)
    counts: list[int] = []
    barrier = threading.Barrier(8)

    def build() -> None:
        with cache.pinned() as pins:
            barrier.wait()
            counts.append(cache.fetch(pins.add([digest])))

    threads = [threading.Thread(target=build) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(counts) == [0] * 7 + [1]
    assert calls("GetObject") == [remote.key(digest)]


def test_materialize_fetches_each_input_once(remote: S3Store, tmp_path: Path, calls: Calls) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("alpha")
    (src / "sub" / "b.bin").write_bytes(os.urandom(2000))
    (src / "same.txt").write_text("alpha")  # the same blob twice in the tree
    tree = ingest_directory(remote, src)
    cache = BlobCache(tmp_path / "cache", remote, max_bytes=10 * MiB)

    assert cache.materialize({tmp_path / "job1": tree.digest}) == 3  # manifest + 2 blobs
    assert (tmp_path / "job1" / "sub" / "b.bin").read_bytes() == (src / "sub/b.bin").read_bytes()
    assert (tmp_path / "job1" / "same.txt").read_text() == "alpha"
    gets = len(calls("GetObject"))
    assert gets == 3
    # the next build using the same input downloads nothing
    assert cache.materialize({tmp_path / "job2": tree.digest, tmp_path / "job3": tree.digest}) == 0
    assert len(calls("GetObject")) == gets
    assert (tmp_path / "job3" / "a.txt").read_text() == "alpha"


def test_publish_uploads_only_what_the_store_lacks(
    remote: S3Store, tmp_path: Path, calls: Calls
) -> None:
    cache = BlobCache(tmp_path / "cache", remote, max_bytes=100 * MiB)
    out = tmp_path / "out"
    out.mkdir()
    (out / "known.txt").write_text("already in the bucket")
    (out / "new.txt").write_text("made by this build")
    (out / "big.bin").write_bytes(os.urandom(7 * MiB))  # over the threshold: in parts
    remote.put_bytes(b"already in the bucket")
    tree = ingest_directory(cache.local, out, move=True)
    digests = [*sorted(tree.blob_digests()), tree.digest]
    sent = cache.publish(digests)
    known = hashlib.sha256(b"already in the bucket").hexdigest()
    assert sorted(sent) == sorted(d for d in digests if d != known)
    assert remote.missing(digests) == []
    big = tree.entries["big.bin"].digest
    assert big is not None
    head = remote.client.head_object(Bucket=remote.bucket, Key=remote.key(big))
    assert head["ETag"].endswith('-2"')  # two parts
    assert set(cache.lru()) == set(digests)  # kept in the cache for the next builds
    puts = len(calls("PutObject")) + len(calls("CompleteMultipartUpload"))
    assert cache.publish(digests) == []  # nothing is sent twice
    assert len(calls("PutObject")) + len(calls("CompleteMultipartUpload")) == puts


def test_a_corrupt_remote_blob_is_not_cached(remote: S3Store, tmp_path: Path) -> None:
    cache = BlobCache(tmp_path / "cache", remote, max_bytes=10 * MiB)
    digest = remote.put_bytes(b"the real bytes")
    remote.client.put_object(Bucket=remote.bucket, Key=remote.key(digest), Body=b"other bytes")
    with pytest.raises(CorruptObjectError, match=f"blob {digest} is corrupt"):
        cache.fetch([digest])
    assert digest not in cache and not cache.local.has(digest)
    assert list(cache.local.tmp.iterdir()) == []


def test_each_worker_owns_a_cache_directory_that_survives_it(
    remote: S3Store, tmp_path: Path
) -> None:
    base = tmp_path / "cache"
    first = BlobCache.open(base, remote, max_bytes=10 * MiB)
    second = BlobCache.open(base, remote, max_bytes=10 * MiB)
    assert first.local.root == base / "worker-0"
    assert second.local.root == base / "worker-1"
    a, b = blobs(remote, 2, 100)
    first.fetch([a])
    time.sleep(0.01)  # the LRU order survives through the files' modification times
    first.fetch([b])
    first.fetch([a])
    first.close()
    again = BlobCache.open(base, remote, max_bytes=10 * MiB)  # a restarted worker
    assert again.local.root == base / "worker-0"
    assert again.lru() == [b, a] and again.total == 200
    assert again.fetch([a, b]) == 0
    again.close()
    second.close()
