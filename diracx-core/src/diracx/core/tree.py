"""Trees: directories as data.

A tree is a manifest ``path -> (kind, mode, digest, size)``, stored itself as a
blob; its digest is the SHA-256 of the canonical manifest. Names and modes are
part of the hash, not only contents. Only empty directories are listed as
entries: the others are implied by the paths below them.
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import stat
import threading
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from json.encoder import encode_basestring as _json_string  # as canonical_json writes strings
from pathlib import Path
from typing import Literal

from diracx.core.canonical import is_digest, sha256_hex
from diracx.core.exceptions import InvalidTreeError
from diracx.core.store import BlobStore

Kind = Literal["file", "executable", "symlink", "directory"]
MODES: dict[str, int] = {"file": 0o644, "executable": 0o755, "symlink": 0o777, "directory": 0o755}
MANIFEST_VERSION = 1


@dataclass(frozen=True, slots=True)
class TreeEntry:
    kind: Kind
    digest: str | None = None  # None for directories; a symlink's digest is its target's
    size: int = 0

    @property
    def mode(self) -> int:
        return MODES[self.kind]

    def to_json(self) -> dict[str, object]:
        """The entry in the manifest (see also _entry_json)."""
        d: dict[str, object] = {"kind": self.kind, "mode": self.mode, "size": self.size}
        if self.digest is not None:
            d["digest"] = self.digest
        return d


def _entry_json(entry: TreeEntry) -> str:
    """``canonical_json(entry.to_json())`` as text (its keys are sorted by hand)."""
    if entry.digest is None:
        return f'{{"kind":"{entry.kind}","mode":{entry.mode},"size":{entry.size}}}'
    return (
        f'{{"digest":"{entry.digest}","kind":"{entry.kind}",'
        f'"mode":{entry.mode},"size":{entry.size}}}'
    )


def check_tree_path(path: str) -> str:
    """Refuse paths that could escape the tree when materialized."""
    # an absolute path, "a//b" or "a/" has an empty part: refused with ".", ".."
    framed = f"/{path}/"
    if not path or "\0" in path or "//" in framed or "/./" in framed or "/../" in framed:
        raise InvalidTreeError(f"unsafe path in tree: {path!r}")
    return path


@dataclass(frozen=True)
class Tree:
    """An immutable directory listing; ``digest`` is its identity."""

    entries: dict[str, TreeEntry]

    def __post_init__(self) -> None:
        leaves: set[str] = set()
        for path, entry in self.entries.items():
            check_tree_path(path)
            if entry.kind != "directory":
                if not is_digest(entry.digest or ""):
                    raise InvalidTreeError(
                        f"digest of {path!r} is not a SHA-256 digest: {entry.digest!r}"
                    )
                leaves.add(path)
        # A path may not pass through a file or a symlink: that would escape on materialization.
        # (paths are checked: no empty part, so plain string operations walk the parents)
        parents = {path[:end]: path for path in self.entries if (end := path.rfind("/")) > 0}
        for parent, path in parents.items():
            end = len(parent)
            while end > 0:
                if parent[:end] in leaves:
                    raise InvalidTreeError(
                        f"{path!r} lies under {parent[:end]!r}, which is not a directory"
                    )
                end = parent.rfind("/", 0, end)

    @classmethod
    def _of_walk(cls, entries: dict[str, TreeEntry]) -> Tree:
        """The tree of entries a directory walk made, without __post_init__'s checks:
        names the file system gave cannot be unsafe (no "", ".", ".." or "/" in them,
        no file above another path) and the digests were just computed. The checks
        cost 25 ms of an ingest of 16,000 files."""
        tree = object.__new__(cls)
        object.__setattr__(tree, "entries", entries)  # frozen: as the dataclass does it
        return tree

    def manifest(self) -> dict[str, object]:
        return {
            "version": MANIFEST_VERSION,
            "entries": {p: e.to_json() for p, e in sorted(self.entries.items())},
        }

    def manifest_bytes(self) -> bytes:
        """``canonical_json(self.manifest())``, written directly: trees of outputs have
        tens of thousands of entries, and this is twice as fast (a test holds the
        two equal)."""
        return self._manifest_bytes

    @cached_property
    def _manifest_bytes(self) -> bytes:
        entries = ",".join(
            f"{_json_string(path)}:{_entry_json(entry)}"
            for path, entry in sorted(self.entries.items())
        )
        return f'{{"entries":{{{entries}}},"version":{MANIFEST_VERSION}}}'.encode()

    @cached_property
    def digest(self) -> str:
        return sha256_hex(self.manifest_bytes())

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries.values())

    def blob_digests(self) -> set[str]:
        """Every blob the tree refers to (not counting the manifest itself)."""
        return {e.digest for e in self.entries.values() if e.digest is not None}

    @classmethod
    def from_bytes(cls, data: bytes) -> Tree:
        try:
            doc = json.loads(data)
            if doc.get("version") != MANIFEST_VERSION:
                raise InvalidTreeError(f"unsupported tree manifest version {doc.get('version')!r}")
            entries = {
                path: TreeEntry(kind=e["kind"], digest=e.get("digest"), size=int(e.get("size", 0)))
                for path, e in doc["entries"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InvalidTreeError(f"malformed tree manifest: {exc}") from None
        for path, entry in entries.items():
            if entry.kind not in MODES:
                raise InvalidTreeError(f"unknown entry kind {entry.kind!r} for {path!r}")
        return cls(entries)


# Files are stored by a few threads: hashing (hashlib releases the GIL) and the file
# system calls of one file overlap with those of others. Outputs of a few small files
# are stored in the calling thread.
INGEST_THREADS = min(4, os.cpu_count() or 1)
THREADED_FROM = 8  # files, or two large ones
LARGE = 1 << 20  # bytes: a file this large is stored before the small ones (see _Todo)
SMALL_BATCH = 16  # small files a thread takes at once


@dataclass(slots=True)
class _File:
    """A regular file found under the ingested root (paths as strings: no pathlib cost
    per file, which counts with many small outputs)."""

    tree_path: str
    kind: Kind
    path: str
    size: int


class _Todo:
    """The files left to store, added by the walk while threads already store them.

    Large files go first, the largest first: their hashing (which releases the GIL)
    then overlaps the small files' system calls, and none is left to hash alone at the
    end. Small files follow in the walk's order, a directory after another: renaming
    files out of one directory in a row is a fifth faster than across directories.
    """

    def __init__(self) -> None:
        self._ready = threading.Condition()
        self._large: list[tuple[int, int]] = []  # a heap of (-size, index)
        self._small: deque[int] = deque()
        self._walking = True
        self.large = 0  # large files added so far

    def add(self, files: list[_File], start: int) -> None:
        """Add ``files[start:]`` (one directory's files: one lock for them all)."""
        with self._ready:
            for i in range(start, len(files)):
                size = files[i].size
                if size >= LARGE:
                    heapq.heappush(self._large, (-size, i))
                    self.large += 1
                else:
                    self._small.append(i)
            self._ready.notify_all()

    def walked(self) -> None:
        with self._ready:
            self._walking = False
            self._ready.notify_all()

    def take(self) -> list[int]:
        """The indexes of the next files to store (a large one alone, or a few small ones:
        one lock for them); empty once there is none left."""
        with self._ready:
            while not (self._large or self._small) and self._walking:
                self._ready.wait()
            if self._large:
                return [heapq.heappop(self._large)[1]]
            small = self._small
            return [small.popleft() for _ in range(min(SMALL_BATCH, len(small)))]


class _Storing:
    """Stores the files of a walk as it finds them: on the calling thread once the walk
    is done, and on helper threads started once the walk has found THREADED_FROM files
    or two large ones."""

    def __init__(self, store: BlobStore, move: bool) -> None:
        self.store = store
        self.move = move
        self.files: list[_File] = []
        self.stored: dict[int, tuple[str, int]] = {}
        self._todo = _Todo()
        self._threads: list[threading.Thread] = []
        self._errors: list[BaseException] = []
        self._stop = False  # set on an error, or when the walk fails

    def add(self, found: list[_File]) -> None:
        """Store *found*, the files of a directory the walk just listed."""
        if not found:
            return
        start = len(self.files)
        self.files.extend(found)
        self._todo.add(self.files, start)
        if not self._threads and (len(self.files) >= THREADED_FROM or self._todo.large >= 2):
            self._threads = [
                threading.Thread(target=self._work, daemon=True, name=f"diracx-ingest-{n}")
                for n in range(INGEST_THREADS - 1)
            ]
            for thread in self._threads:
                thread.start()

    def finish(self) -> dict[str, TreeEntry]:
        """Once the walk is done: store what is left, with the helpers; the entries."""
        self._todo.walked()
        self._work()
        for thread in self._threads:
            thread.join()
        if self._errors:
            raise self._errors[0]
        return {f.tree_path: TreeEntry(f.kind, *self.stored[i]) for i, f in enumerate(self.files)}

    def abort(self) -> None:
        """The walk failed: stop the helpers (the files they stored stay, unnamed)."""
        self._stop = True
        self._todo.walked()
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        try:
            while not self._stop and (taken := self._todo.take()):
                for i in taken:
                    self.stored[i] = self.store.put_file(self.files[i].path, move=self.move)
        except BaseException as exc:  # reported by finish()
            self._errors.append(exc)
            self._stop = True


def ingest_directory(
    store: BlobStore, root: Path, *, move: bool = False, exclude: frozenset[str] = frozenset()
) -> Tree:
    """Store every file under *root* and the manifest; return the tree.

    With *move*, files are renamed into the store instead of copied (the
    directory is consumed). *exclude* holds top-level-relative paths to skip.
    Files are stored while the walk goes on (see _Storing).
    """
    entries: dict[str, TreeEntry] = {}
    storing = _Storing(store, move)
    stack: list[tuple[str, str]] = [(str(root), "")]
    try:
        while stack:
            directory, rel = stack.pop()
            children = 0
            found: list[_File] = []
            with os.scandir(directory) as it:
                for entry in it:
                    path = rel + entry.name
                    if path in exclude:
                        continue
                    children += 1
                    st = entry.stat(follow_symlinks=False)
                    if stat.S_ISLNK(st.st_mode):
                        target = os.readlink(entry.path).encode()
                        entries[path] = TreeEntry("symlink", store.put_bytes(target), len(target))
                    elif stat.S_ISDIR(st.st_mode):
                        stack.append((entry.path, f"{path}/"))
                    elif stat.S_ISREG(st.st_mode):
                        kind: Kind = "executable" if st.st_mode & 0o111 else "file"
                        found.append(_File(path, kind, entry.path, st.st_size))
                    else:
                        raise InvalidTreeError(
                            f"{entry.path}: only files, directories and symlinks can be stored"
                        )
            storing.add(found)
            if children == 0 and rel:
                entries[rel.rstrip("/")] = TreeEntry("directory")
    except BaseException:
        storing.abort()
        raise
    entries.update(storing.finish())
    tree = Tree._of_walk(entries)
    store.put_bytes(tree.manifest_bytes())
    return tree


def load_tree(store: BlobStore, digest: str) -> Tree:
    """The tree whose manifest is the blob *digest* (verified on read)."""
    return Tree.from_bytes(store.read_bytes(digest))


def materialize_tree(store: BlobStore, tree: Tree, dest: Path, *, readonly: bool = True) -> None:
    """Write *tree* out under *dest* (created), every blob verified on the way."""
    dest.mkdir(parents=True, exist_ok=True)
    made_dirs: set[Path] = {dest}
    for path, entry in sorted(tree.entries.items()):
        target = dest / path
        parent = target.parent
        if parent not in made_dirs:
            parent.mkdir(parents=True, exist_ok=True)
            # every directory made on the way, not only the last one, is made read-only below
            while parent not in made_dirs:
                made_dirs.add(parent)
                parent = parent.parent
        if entry.kind == "directory":
            target.mkdir(exist_ok=True)
            made_dirs.add(target)
        elif entry.kind == "symlink":
            assert entry.digest is not None
            os.symlink(store.read_bytes(entry.digest).decode(), target)
        else:
            assert entry.digest is not None
            store.copy_to(entry.digest, target)
            mode = entry.mode & (0o555 if readonly else 0o777)
            os.chmod(target, mode)
    if readonly:
        for directory in sorted(made_dirs, key=lambda p: len(p.parts), reverse=True):
            os.chmod(directory, 0o555)


def make_writable(root: Path) -> None:
    """Undo ``readonly`` materialization so a scratch directory can be removed."""
    if not root.exists():
        return
    os.chmod(root, 0o755)
    for dirpath, dirnames, _ in os.walk(root):
        for name in dirnames:
            p = Path(dirpath) / name
            if not p.is_symlink():
                os.chmod(p, 0o755)


def remove_tree(root: Path) -> None:
    """Remove a directory that may hold read-only materialized trees.

    The plain removal is tried first (it succeeds as root, or when nothing is
    read-only); only if it fails are the directories made writable first.
    """
    try:
        shutil.rmtree(root)
    except FileNotFoundError:
        pass
    except OSError:
        make_writable(root)
        shutil.rmtree(root, ignore_errors=True)
