"""The client-side instantiate pass: stages → derivations, DRefs, the blobs to upload.

:func:`instantiate` walks the closure of the target stages, hashes host files
and directories into trees (each once per call; nothing is copied), computes
every DRef, merges identical stages, and checks the graph with the same
:func:`diracx.core.derivation.plan_order` the server runs. The result says what
to submit and which blobs the server may need; sending them is the session's job.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from diracx.api.stages import HostTree, Stage, StageFunction, TreeRef
from diracx.core.derivation import (
    Derivation,
    DrvInput,
    Input,
    PipelineSubmission,
    TreeInput,
    plan_order,
)
from diracx.core.exceptions import DiracxError, InvalidPipelineError
from diracx.core.tree import Tree

__all__ = ["BUILDER_ENV", "Instantiated", "PipelineInBuilderError", "instantiate"]

BUILDER_ENV = "DIRACX_IN_BUILDER"  # set by the workers in every build's environment

T = TypeVar("T")


class PipelineInBuilderError(DiracxError, RuntimeError):
    """A pipeline was started from code running inside a build."""


@dataclass(frozen=True)
class Instantiated:
    """The result of the instantiate pass: what a session submits and uploads."""

    submission: PipelineSubmission
    """Every derivation of the closure keyed by DRef, and the deduplicated targets."""
    stages: dict[str, Stage]
    """DRef → the (first) stage that instantiated to it."""
    targets: list[str]
    """One DRef per target given, in the order given (a stage given twice appears twice)."""
    uploads: dict[str, Path | bytes]
    """Every blob the pipeline refers to that this client can provide: host files
    (a local path, read at upload time: it may have changed since, so let the
    server's digest check catch it), tree manifests, symlink targets and python
    sources (bytes). Upload the ones the server lacks."""
    order: list[str]
    """Every DRef, inputs before dependents."""
    trees: dict[str, Tree]
    """The trees built from host files and directories and python sources, by digest."""
    external: frozenset[str]
    """Tree digests the pipeline uses but cannot upload (TreeRef inputs, the source
    of a hand-made python builder): the server must already have them."""
    keys: list[str] | None = None
    """For a mapping of targets: ``keys[i]`` is the name of ``targets[i]``."""
    single: bool = False
    """True when a single Stage was given (not a sequence or mapping)."""

    def arrange(self, by_dref: Mapping[str, T]) -> T | list[T] | dict[str, T]:
        """Put per-DRef results back in the shape the targets were given in."""
        values = [by_dref[d] for d in self.targets]
        if self.single:
            return values[0]
        if self.keys is not None:
            return dict(zip(self.keys, values, strict=True))
        return values

    def upload_size(self, digest: str) -> int:
        """The size in bytes of one of ``uploads`` (for progress reports)."""
        blob = self.uploads[digest]
        return len(blob) if isinstance(blob, bytes) else os.stat(blob).st_size


class _Resolver:
    """One instantiate pass: each host tree scanned once, each stage derived once."""

    def __init__(self) -> None:
        # id(stage) -> DRef; the caller keeps the stages alive, so ids are not reused
        self.drefs: dict[int, str] = {}
        self.derivations: dict[str, Derivation] = {}
        self.stages: dict[str, Stage] = {}
        self.uploads: dict[str, Path | bytes] = {}
        self.host_digests: dict[HostTree, str] = {}
        self.drv_inputs: dict[str, DrvInput] = {}  # one input object per DRef or tree
        self.tree_inputs: dict[str, TreeInput] = {}
        self.trees: dict[str, Tree] = {}

    def resolve(self, roots: Iterable[Stage]) -> None:
        """Derive *roots* and their closure, inputs first (iterative: deep chains are fine)."""
        drefs = self.drefs
        for root in roots:
            if id(root) in drefs:
                continue
            stack: list[tuple[Stage, Iterator[Stage]]] = [(root, iter(root._deps))]
            on_path = {id(root)}
            while stack:
                node, deps = stack[-1]
                for dep in deps:
                    if id(dep) in drefs:
                        continue
                    if id(dep) in on_path:
                        names = " -> ".join(s.name for s, _ in stack) + f" -> {dep.name}"
                        raise InvalidPipelineError(f"the pipeline has a cycle: {names}")
                    on_path.add(id(dep))
                    stack.append((dep, iter(dep._deps)))
                    break
                else:
                    stack.pop()
                    on_path.discard(id(node))
                    self._visit(node)

    def _visit(self, node: Stage) -> None:
        memo = node._memo
        if node._dref is not None and memo is not None:  # a pure stage seen before
            drv = memo[1]
        else:
            # What the inputs are this time: a stage that reads host files keeps its
            # derivation for as long as those files hash the same.
            resolved = tuple(
                self.drefs[id(v)]
                if isinstance(v, Stage)
                else v.digest
                if isinstance(v, TreeRef)
                else self._host_tree(v)
                for v in node._inputs.values()
            )
            if memo is not None and memo[0] == resolved:
                drv = memo[1]
            else:
                drv = self._derivation(node, resolved)
                node._memo = (resolved, drv)  # one store: safe if threads share stages
                if node._pure:
                    node._dref = drv.dref
        dref = drv.dref
        self.drefs[id(node)] = dref
        if node._blobs:
            self.uploads.update(node._blobs)
        if dref not in self.derivations:
            self.derivations[dref] = drv
            self.stages[dref] = node

    def _derivation(self, node: Stage, resolved: tuple[str, ...]) -> Derivation:
        inputs: dict[str, Input] = {}
        for (name, value), ref in zip(node._inputs.items(), resolved, strict=True):
            made: Input | None
            if isinstance(value, Stage):
                made = self.drv_inputs.get(ref)
                if made is None:
                    made = self.drv_inputs[ref] = DrvInput.model_construct(drv=ref)
            else:
                made = self.tree_inputs.get(ref)
                if made is None:
                    made = self.tree_inputs[ref] = TreeInput.model_construct(tree=ref)
            inputs[name] = made
        # Not validated again: the Stage checked its name, builder, config and input
        # names when it was made, and the inputs are digests computed here.
        return Derivation.trusted(
            name=node._name,
            builder=node._builder,
            config=node._config,
            inputs=inputs,
            matcher=node._matcher,
            spec=node._spec,
            scheduling=node._scheduling,
        )

    def _host_tree(self, host: HostTree) -> str:
        digest = self.host_digests.get(host)
        if digest is None:
            tree = host.scan(self.uploads)
            digest = self.host_digests[host] = tree.digest
            self.trees[digest] = tree
        return digest


def _targets(targets: Any) -> tuple[list[Stage], list[str] | None, bool]:
    def check(value: Any, where: str) -> Stage:
        if isinstance(value, Stage):
            return value
        if isinstance(value, StageFunction):
            raise TypeError(
                f"{where} is the stage function {value.stage_name!r} itself: "
                "call it to make a stage"
            )
        raise TypeError(f"{where} must be a Stage, not {type(value).__name__}")

    if isinstance(targets, Stage | StageFunction):
        return [check(targets, "the target")], None, True
    if isinstance(targets, Mapping):
        keys = list(targets)
        for key in keys:
            if not isinstance(key, str):
                raise TypeError(f"target names must be strings, not {key!r}")
        stages = [check(targets[k], f"target {k!r}") for k in keys]
        keys_out: list[str] | None = keys
    elif isinstance(targets, Sequence) and not isinstance(targets, str | bytes):
        stages = [check(t, f"target #{i}") for i, t in enumerate(targets)]
        keys_out = None
    else:
        raise TypeError(
            f"instantiate() takes a Stage, a sequence of stages or a mapping of names to stages, "
            f"not {type(targets).__name__}"
        )
    if not stages:
        raise ValueError("there is nothing to instantiate: no target stage was given")
    return stages, keys_out, False


def instantiate(targets: Stage | Sequence[Stage] | Mapping[str, Stage]) -> Instantiated:
    """Compute the derivations of *targets* and their closure, and check the graph.

    Host files and directories are hashed here (each once per call; large files
    as streams, and files unchanged since an earlier call in this process are not
    read again); nothing is copied or uploaded. Raises
    :class:`PipelineInBuilderError` when called from inside a build, and
    :class:`~diracx.core.exceptions.InvalidPipelineError` for a bad graph.
    """
    if BUILDER_ENV in os.environ:
        raise PipelineInBuilderError(
            "pipelines cannot be started from inside a builder: put the code that runs your "
            "pipeline under `if __name__ == '__main__':` (the worker imports the module that "
            "defines your @stage functions, which runs its top-level code)"
        )
    stages, keys, single = _targets(targets)
    resolver = _Resolver()
    resolver.resolve(stages)
    target_drefs = [resolver.drefs[id(s)] for s in stages]
    # Every derivation was validated when it was made; plan_order checks the graph.
    submission = PipelineSubmission.model_construct(
        derivations=resolver.derivations, targets=list(dict.fromkeys(target_drefs))
    )
    order = [dref for dref, _ in plan_order(submission)]
    trees = resolver.trees
    external: set[str] = set()
    for stage_ in resolver.stages.values():
        for value in stage_._inputs.values():
            if isinstance(value, TreeRef) and value.digest not in resolver.uploads:
                external.add(value.digest)
        if stage_._builder.get("executor") == "python":
            source = stage_._builder.get("source")
            if isinstance(source, str):
                if source in resolver.uploads:
                    blob = resolver.uploads[source]
                    if source not in trees and isinstance(blob, bytes):
                        trees[source] = Tree.from_bytes(blob)
                else:
                    external.add(source)
    return Instantiated(
        submission=submission,
        stages=resolver.stages,
        targets=target_drefs,
        uploads=resolver.uploads,
        order=order,
        trees=trees,
        external=frozenset(external),
        keys=keys,
        single=single,
    )
