"""Trees: directories as data.

A tree is a manifest ``path -> (kind, mode, digest, size)``, stored itself as a
blob; its digest is the SHA-256 of the canonical manifest. Names and modes are
part of the hash, not only contents. Only empty directories are listed as
entries: the others are implied by the paths below them.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from diracx.core.canonical import canonical_json, check_is_digest, sha256_hex
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
        d: dict[str, object] = {"kind": self.kind, "mode": self.mode, "size": self.size}
        if self.digest is not None:
            d["digest"] = self.digest
        return d


def check_tree_path(path: str) -> str:
    """Refuse paths that could escape the tree when materialized."""
    # an absolute path, "a//b" or "a/" has an empty part: refused with ".", ".."
    if not path or "\0" in path or any(part in ("", ".", "..") for part in path.split("/")):
        raise InvalidTreeError(f"unsafe path in tree: {path!r}")
    return path


@dataclass(frozen=True)
class Tree:
    """An immutable directory listing; ``digest`` is its identity."""

    entries: dict[str, TreeEntry]

    def __post_init__(self) -> None:
        for path, entry in self.entries.items():
            check_tree_path(path)
            if entry.kind != "directory":
                try:
                    check_is_digest(entry.digest or "", what=f"digest of {path!r}")
                except ValueError as exc:
                    raise InvalidTreeError(str(exc)) from None
        # A path may not pass through a file or a symlink: that would escape on materialization.
        # (paths are checked: no empty part, so plain string operations walk the parents)
        leaves = {p for p, e in self.entries.items() if e.kind != "directory"}
        for path in self.entries:
            end = path.rfind("/")
            while end > 0:
                parent = path[:end]
                if parent in leaves:
                    raise InvalidTreeError(
                        f"{path!r} lies under {parent!r}, which is not a directory"
                    )
                end = path.rfind("/", 0, end)

    def manifest(self) -> dict[str, object]:
        return {
            "version": MANIFEST_VERSION,
            "entries": {p: e.to_json() for p, e in sorted(self.entries.items())},
        }

    def manifest_bytes(self) -> bytes:
        return canonical_json(self.manifest())

    @property
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
# system calls of one file overlap with those of others. Outputs of one or two files
# are stored in the calling thread.
INGEST_THREADS = min(4, os.cpu_count() or 1)
THREADED_FROM = 8  # files


@dataclass(frozen=True, slots=True)
class _File:
    """A regular file found under the ingested root (paths as strings: no pathlib cost
    per file, which counts with many small outputs)."""

    tree_path: str
    kind: Kind
    path: str
    size: int


def _store_files(store: BlobStore, files: list[_File], move: bool) -> dict[str, TreeEntry]:
    """Store *files* on up to INGEST_THREADS threads, the largest first: their hashing
    (which releases the GIL) then overlaps the small files' system calls, and no large
    file is left to hash alone at the end."""
    order = sorted(range(len(files)), key=lambda i: -files[i].size)
    results: list[tuple[str, int] | None] = [None] * len(files)
    todo = iter(order)  # next() on it is atomic (the GIL): no index is taken twice
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for i in todo:
                if errors:
                    return
                f = files[i]
                results[i] = store.put_file(f.path, move=move)
        except BaseException as exc:  # reported by the calling thread
            errors.append(exc)

    count = INGEST_THREADS if len(files) >= THREADED_FROM else 1
    threads = [threading.Thread(target=work, daemon=True) for _ in range(count - 1)]
    for t in threads:
        t.start()
    work()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    entries: dict[str, TreeEntry] = {}
    for f, stored in zip(files, results, strict=True):
        assert stored is not None
        entries[f.tree_path] = TreeEntry(f.kind, stored[0], stored[1])
    return entries


def ingest_directory(
    store: BlobStore, root: Path, *, move: bool = False, exclude: frozenset[str] = frozenset()
) -> Tree:
    """Store every file under *root* and the manifest; return the tree.

    With *move*, files are renamed into the store instead of copied (the
    directory is consumed). *exclude* holds top-level-relative paths to skip.
    """
    entries: dict[str, TreeEntry] = {}
    files: list[_File] = []
    stack: list[tuple[str, str]] = [(str(root), "")]
    while stack:
        directory, rel = stack.pop()
        children = 0
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
                    files.append(_File(path, kind, entry.path, st.st_size))
                else:
                    raise InvalidTreeError(
                        f"{entry.path}: only files, directories and symlinks can be stored"
                    )
        if children == 0 and rel:
            entries[rel.rstrip("/")] = TreeEntry("directory")
    entries.update(_store_files(store, files, move))
    tree = Tree(entries)
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
