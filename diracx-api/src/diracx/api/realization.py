"""Realizations on the client side: read, download, or feed them to new pipelines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diracx.api.stages import TreeRef
from diracx.core.tree import Tree, materialize_tree

if TYPE_CHECKING:
    from diracx.api.session import AsyncSession


class AsyncRealization:
    """One build result: its output tree can be listed, read and downloaded."""

    def __init__(self, session: AsyncSession, *, rref: str, dref: str, name: str, output: str):
        self._session = session
        self.rref = rref
        self.dref = dref
        self.name = name
        self.output = output  # digest of the output tree

    def __repr__(self) -> str:
        return f"<Realization {self.name} {self.rref[:12]}>"

    def as_input(self) -> TreeRef:
        """Use this result as an input of a stage in a new pipeline."""
        return TreeRef(self.output)

    async def tree(self) -> Tree:
        return await self._session.fetch_tree(self.output)

    async def files(self) -> list[str]:
        """Paths of the files and symlinks in the output, sorted."""
        tree = await self.tree()
        return sorted(p for p, e in tree.entries.items() if e.kind != "directory")

    async def read_bytes(self, path: str) -> bytes:
        tree = await self.tree()
        entry = tree.entries.get(path)
        if entry is None or entry.digest is None or entry.kind == "symlink":
            raise FileNotFoundError(
                f"{self.name} has no file {path!r}; it has: {await self.files()}"
            )
        return await self._session.fetch_blob(entry.digest)

    async def read_text(self, path: str, encoding: str = "utf-8") -> str:
        return (await self.read_bytes(path)).decode(encoding)

    async def result(self) -> Any:
        """The return value of a python stage (its ``result.json``)."""
        return json.loads(await self.read_bytes("result.json"))

    async def download(self, dest: str | Path) -> Path:
        """Write the output tree under *dest* (created; files writable)."""
        dest = Path(dest)
        tree = await self.tree()
        await self._session.fetch_blobs(tree.blob_digests())
        materialize_tree(self._session.cache, tree, dest, readonly=False)
        return dest
