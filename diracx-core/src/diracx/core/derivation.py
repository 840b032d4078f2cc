"""Derivations (what to build) and realizations (what was built), and their identities.

A derivation's identity, its DRef, is the SHA-256 of its canonical JSON: name,
builder, config, the DRefs or tree digests of its inputs, and its matcher.
Changing anything upstream changes every DRef downstream (a Merkle DAG).
"""

from __future__ import annotations

import pickle
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, Self, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)

from diracx.core.builders import SECRET_NAME_RE, BuilderSpec, parse_builder
from diracx.core.canonical import canonical_json, check_is_digest, digest_of, sha256_hex
from diracx.core.exceptions import InvalidPipelineError

# \Z, not $: "$" also matches before a trailing newline
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
INPUT_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")

Digest = Annotated[str, AfterValidator(check_is_digest)]
DRef = Digest  # the digest of a derivation
RRef = Digest  # the digest of a realization


class DrvInput(BaseModel):
    """An input that is another derivation's output."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    drv: DRef


class TreeInput(BaseModel):
    """An input that is a tree already in the store (host files, an earlier result)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    tree: Digest


Input = DrvInput | TreeInput


MatcherKind = Literal["only", "latest", "all", "some", "best", "exact"]
METRIC_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}\Z")


class Matcher(BaseModel):
    """Which realizations of a derivation count: data, evaluated on the server
    (``diracx.core.matching``). Part of the DRef: a changed matcher is another derivation.

    - ``only`` (default): deterministic, exactly one; a second, different realization
      (same inputs) is an error that shows both.
    - ``latest(n)``: the newest *n* (at least one, built if there is none).
    - ``all``: every realization (at least one).
    - ``some(n)``: built until *n* distinct realizations exist; picks all of them.
    - ``best(metric, n, mode, at_least)``: the *n* with the highest (``mode="higher"``) or
      lowest value of a metric the builder reported in ``metrics.json``, once at least
      ``at_least`` realizations (default 1) exist: "train five seeds, keep the best".
    - ``exact(rrefs)``: exactly these realizations of a stage of the same name (built
      under another matcher: the RRefs cannot be of this very DRef); never builds.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: MatcherKind = "only"
    n: int | None = Field(default=None, ge=1, le=10000)
    metric: str | None = None
    mode: Literal["higher", "lower"] | None = None
    rrefs: tuple[RRef, ...] | None = None
    # best: build until this many realizations exist, then choose among them. Left out
    # of the canonical form when unset, so matchers from before it keep their DRefs.
    at_least: int | None = Field(default=None, ge=1, le=10000)

    @model_validator(mode="after")
    def _check(self) -> Matcher:
        kind = self.kind
        allowed = {
            "only": set(),
            "all": set(),
            "latest": {"n"},
            "some": {"n"},
            "best": {"n", "metric", "mode", "at_least"},
            "exact": {"rrefs"},
        }[kind]
        fields = ("n", "metric", "mode", "rrefs", "at_least")
        given = {f for f in fields if getattr(self, f) is not None}
        if given - allowed:
            raise ValueError(f"matcher {kind!r} takes no {', '.join(sorted(given - allowed))}")
        if kind in ("latest", "some", "best") and self.n is None:
            raise ValueError(f"matcher {kind!r} needs n (how many realizations)")
        if kind == "best":
            if self.metric is None or not METRIC_RE.match(self.metric):
                raise ValueError(
                    f"matcher 'best' needs a metric name (letters, digits, '_.:/-'): "
                    f"{self.metric!r}"
                )
            if self.mode is None:
                raise ValueError("matcher 'best' needs mode 'higher' or 'lower'")
        if kind == "exact":
            if not self.rrefs:
                raise ValueError("matcher 'exact' needs at least one RRef")
            if list(self.rrefs) != sorted(set(self.rrefs)):
                raise ValueError("matcher 'exact' needs its RRefs sorted and without repeats")
        return self

    @classmethod
    def of(
        cls,
        kind: MatcherKind,
        *,
        n: int | None = None,
        metric: str | None = None,
        mode: Literal["higher", "lower"] | None = None,
        rrefs: Iterable[str] | None = None,
        at_least: int | None = None,
    ) -> Matcher:
        """A matcher in canonical form (``exact``'s RRefs sorted, without repeats;
        ``best``'s ``at_least`` left out when it is 1, the default)."""
        return cls(
            kind=kind,
            n=n,
            metric=metric,
            mode=mode,
            rrefs=None if rrefs is None else tuple(sorted(set(rrefs))),
            at_least=None if at_least == 1 else at_least,
        )

    @property
    def build_until(self) -> int:
        """How many realizations (with one context) it builds until it is satisfied:
        n for ``some(n)``, ``at_least`` for ``best``; 1 for the others (``exact``: 0)."""
        if self.kind == "some":
            return self.n or 1
        if self.kind == "best":
            return self.at_least or 1
        return 0 if self.kind == "exact" else 1

    @property
    def single(self) -> bool:
        """Whether it picks at most one realization: a dependent then finds it at
        ``inputs/<name>/`` itself, else each one at ``inputs/<name>/<k>/``."""
        if self.kind == "only":
            return True
        if self.kind in ("latest", "best"):
            return self.n == 1
        return self.kind == "exact" and len(self.rrefs or ()) == 1

    def describe(self) -> str:
        """``only``, ``latest(2)``, ``some(5)``, ``best(accuracy, 1, higher)``, ..."""
        if self.kind in ("only", "all"):
            return self.kind
        if self.kind in ("latest", "some"):
            return f"{self.kind}({self.n})"
        if self.kind == "best":
            of = f", at_least={self.at_least}" if self.at_least else ""
            return f"best({self.metric}, {self.n}, {self.mode}{of})"
        return f"exact({len(self.rrefs or ())} RRefs)"


DEFAULT_QUEUE = "default"
QUEUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")


class Scheduling(BaseModel):
    """Where and how a derivation's job runs: not what it builds, so not part of the DRef.

    ``queue`` names the Celery queue (a site, ``gpu``, ...): only workers that serve it
    take the job. ``cpus`` is how many of a worker's slots the build takes; ``memory_mb``
    and ``gpus`` must fit what the worker declared. ``retries`` is how many times a
    failing build is tried again, ``retry_backoff`` the wait before the first retry
    (doubled for each next one). A lost worker never counts against ``retries``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    queue: str = DEFAULT_QUEUE
    cpus: int = Field(default=1, ge=1, le=1024)
    memory_mb: int = Field(default=0, ge=0)
    gpus: int = Field(default=0, ge=0, le=64)
    retries: int = Field(default=0, ge=0, le=100)
    retry_backoff: float = Field(default=0.0, ge=0.0, le=86400.0)

    @field_validator("queue")
    @classmethod
    def _check_queue(cls, queue: str) -> str:
        if not QUEUE_RE.match(queue):
            raise ValueError(
                f"queue {queue!r} must be 1-64 letters, digits, '.', '_', ':' or '-', "
                "starting with a letter or digit"
            )
        return queue


DEFAULT_SCHEDULING = Scheduling()


class _Computed:
    """What a derivation computes from itself, once each: its parsed builder, canonical
    body, DRef and input DRefs."""

    __slots__ = ("body", "dref", "inputs", "spec")

    def __init__(self) -> None:
        self.spec: BuilderSpec | None = None
        self.body: bytes | None = None
        self.dref: str | None = None
        self.inputs: dict[str, str] | None = None


class Derivation(BaseModel):
    """What to build: the node of a pipeline, as sent by a client and stored by the server.

    ``scheduling`` travels with it but is not hashed (see :class:`Scheduling`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    builder: dict[str, Any]
    config: dict[str, Any] = {}
    inputs: dict[str, Input] = {}
    matcher: Matcher = Matcher()
    scheduling: Scheduling = DEFAULT_SCHEDULING

    @field_validator("name")
    @classmethod
    def _check_name(cls, name: str) -> str:
        if not NAME_RE.match(name):
            raise ValueError(
                f"stage name {name!r} must be 1-128 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit"
            )
        return name

    @field_validator("inputs")
    @classmethod
    def _check_inputs(cls, inputs: dict[str, Input]) -> dict[str, Input]:
        for name in inputs:
            if not INPUT_NAME_RE.match(name):
                raise ValueError(f"input name {name!r} must be a Python-style identifier")
        return inputs

    @field_validator("config")
    @classmethod
    def _check_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        if not config:  # nothing to check (the common case)
            return config
        try:
            canonical_json(config)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"config must be plain JSON (no NaN, no objects): {exc}") from None
        return config

    @model_validator(mode="after")
    def _check_builder(self) -> Derivation:
        try:
            self.builder_spec().check_inputs(set(self.inputs))
        except InvalidPipelineError as exc:
            raise ValueError(str(exc)) from None
        return self

    # What is computed from it, once: a derivation is immutable.
    _memo: _Computed | None = PrivateAttr(default=None)

    @classmethod
    def trusted(
        cls,
        *,
        name: str,
        builder: dict[str, Any],
        config: dict[str, Any],
        inputs: dict[str, Input],
        matcher: Matcher,
        spec: BuilderSpec,
        scheduling: Scheduling = DEFAULT_SCHEDULING,
    ) -> Derivation:
        """A derivation from parts already validated (the client's stages), not checked again."""
        drv = cls.model_construct(
            name=name,
            builder=builder,
            config=config,
            inputs=inputs,
            matcher=matcher,
            scheduling=scheduling,
        )
        drv._computed().spec = spec
        return drv

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        copy = super().model_copy(update=update, deep=deep)
        if update:  # a changed copy is another derivation: forget what was computed
            copy._private()["_memo"] = None
        return copy

    def _private(self) -> dict[str, Any]:
        # the private dict itself: pydantic's __getattr__ is slow on a hot path
        return cast(dict[str, Any], self.__pydantic_private__)

    def _computed(self) -> _Computed:
        private = self._private()
        memo: _Computed | None = private["_memo"]
        if memo is None:
            memo = private["_memo"] = _Computed()
        return memo

    def builder_spec(self) -> BuilderSpec:
        memo = self._computed()
        if memo.spec is None:
            memo.spec = parse_builder(self.builder)
        return memo.spec

    def body(self) -> dict[str, Any]:
        """The canonical document hashed into the DRef; defaults are left out so that
        adding an optional field later does not change existing identities."""
        return {
            "name": self.name,
            "builder": self.builder_spec().model_dump(mode="json", exclude_defaults=True)
            | {"executor": self.builder["executor"]},
            "config": self.config,
            "inputs": {k: v.model_dump(mode="json") for k, v in sorted(self.inputs.items())},
            # fields left out when unset: the default matcher hashes as it always did
            "matcher": self.matcher.model_dump(mode="json", exclude_none=True),
        }

    def canonical_body(self) -> bytes:
        """The canonical JSON of :meth:`body`: what the DRef hashes, and what is stored."""
        memo = self._computed()
        if memo.body is None:
            memo.body = canonical_json(self.body())
        return memo.body

    @property
    def dref(self) -> str:
        memo = self._computed()
        if memo.dref is None:
            memo.dref = sha256_hex(self.canonical_body())
        return memo.dref

    def input_drefs(self) -> Mapping[str, str]:
        """Input name -> the DRef of the derivation it is the output of."""
        memo = self._computed()
        if memo.inputs is None:
            memo.inputs = {k: v.drv for k, v in self.inputs.items() if isinstance(v, DrvInput)}
        return memo.inputs

    def tree_digests(self) -> set[str]:
        """Trees this derivation needs from the store (tree inputs and python sources)."""
        trees = {v.tree for v in self.inputs.values() if isinstance(v, TreeInput)}
        source = self.builder.get("source")
        if self.builder.get("executor") == "python" and isinstance(source, str):
            trees.add(source)
        return trees


def realization_ref(dref: str, context: dict[str, list[str]], output: str) -> str:
    """RRef = H(DRef, context, output tree): a deterministic rebuild yields the same RRef."""
    return digest_of(
        {"dref": dref, "context": {k: sorted(v) for k, v in context.items()}, "output": output}
    )


class ValidatedDerivations:
    """Derivations validated before, by the exact document each came from.

    Validating a document is deterministic and a derivation immutable, so the same
    document always gives the same derivation: a pipeline submitted again (the cached
    re-run) is neither validated nor hashed again. The key is the document's pickle,
    which is type-exact (``1``, ``1.0`` and ``true`` are three documents, as they are
    three DRefs); two equal documents that pickle differently only miss. At most *size*
    documents are kept, the oldest forgotten first.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._drvs: dict[bytes, Derivation] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(doc: Any) -> bytes | None:
        """The key of a plain document (None for anything else: validated every time)."""
        if type(doc) is not dict:
            return None
        try:
            return pickle.dumps(doc, protocol=5)
        except Exception:  # not plain data: nothing to reuse
            return None

    def get(self, key: bytes) -> Derivation | None:
        return self._drvs.get(key)

    def put(self, validated: Mapping[bytes, Derivation]) -> None:
        with self._lock:
            self._drvs.update(validated)
            while len(self._drvs) > self.size:
                del self._drvs[next(iter(self._drvs))]

    def clear(self) -> None:
        with self._lock:
            self._drvs.clear()


# A pipeline of up to this many stages is parsed again without validating anything; at
# about 6 KiB a derivation (document and models), at most about 50 MB.
VALIDATED = ValidatedDerivations(8192)


class PipelineSubmission(BaseModel):
    """A set of target derivations with their closure, keyed by the client's DRefs.

    ``secrets`` carries the values of the secrets its container steps name (never
    part of a derivation, a hash, a log or a response: see ``diracx.core.secrets``).
    """

    model_config = ConfigDict(extra="forbid")

    derivations: dict[str, Derivation] = Field(min_length=1)
    targets: list[str] = Field(min_length=1)
    secrets: dict[str, SecretStr] = Field(
        default={}, description="secret name -> value, for the steps that name secrets"
    )
    force: list[str] = Field(
        default=[],
        max_length=10000,
        description="stages (by name or DRef) to build again even if their matcher is satisfied",
    )

    @field_validator("derivations", mode="wrap")
    @classmethod
    def _reuse_validated(
        cls, value: Any, handler: ValidatorFunctionWrapHandler
    ) -> dict[str, Derivation]:
        """Validate only the derivations not validated before from the same document
        (``VALIDATED``); the others are the very derivations validated then."""
        if type(value) is not dict or not value:
            return cast(dict[str, Derivation], handler(value))
        keys: dict[str, bytes] = {}
        known: dict[str, Derivation] = {}
        for dref, doc in value.items():
            key = VALIDATED.key(doc) if type(dref) is str else None
            if key is None:
                continue
            drv = VALIDATED.get(key)
            if drv is None:
                keys[dref] = key
            else:
                known[dref] = drv
        fresh = {k: v for k, v in value.items() if k not in known}
        validated: dict[str, Derivation] = handler(fresh) if fresh else {}
        VALIDATED.put({key: validated[dref] for dref, key in keys.items()})
        return {k: known[k] if k in known else validated[k] for k in value}

    @field_validator("secrets")
    @classmethod
    def _check_secrets(cls, secrets: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name in secrets:
            if not SECRET_NAME_RE.match(name):
                raise ValueError(
                    f"secret name {name!r} must be 1-128 letters, digits, '.', '_' or '-'"
                )
        return secrets


def forced_drefs(submission: PipelineSubmission) -> set[str]:
    """The DRefs ``force`` names (a stage name names every stage so called)."""
    by_name: dict[str, set[str]] = {}
    for dref, drv in submission.derivations.items():
        by_name.setdefault(drv.name, set()).add(dref)
    forced: set[str] = set()
    for item in submission.force:
        if item in submission.derivations:
            forced.add(item)
        elif item in by_name:
            forced |= by_name[item]
        else:
            names = ", ".join(sorted(by_name)[:20])
            raise InvalidPipelineError(
                f"force names {item!r}, which is no stage of this pipeline (stages: {names})"
            )
    return forced


def plan_order(submission: PipelineSubmission) -> list[tuple[str, Derivation]]:
    """Instantiate: check the graph and every hash, return derivations in build order.

    Raises InvalidPipelineError naming the offending stage for a missing input, a
    cycle, a target that is not part of the pipeline, or a DRef that does not
    match the derivation's content. The server runs this on every submission; it
    never trusts a client's hashes.
    """
    drvs = submission.derivations
    for target in submission.targets:
        if target not in drvs:
            raise InvalidPipelineError(f"target {target} is not among the submitted derivations")
    for drv in drvs.values():
        for input_name, dep in drv.input_drefs().items():
            if dep not in drvs:
                raise InvalidPipelineError(
                    f"stage {drv.name!r} input {input_name!r} names derivation {dep}, "
                    "which is not part of the pipeline"
                )
    order = _topological_order(drvs)
    for key, drv in drvs.items():
        actual = drv.dref
        if actual != key:
            raise InvalidPipelineError(
                f"hash mismatch for stage {drv.name!r}: submitted as {key} "
                f"but its content hashes to {actual}"
            )
    return [(key, drvs[key]) for key in order]


def _topological_order(drvs: dict[str, Derivation]) -> list[str]:
    """Depth-first order, inputs before dependents; a cycle is reported by stage names."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in drvs:
        if state.get(root) == 2:
            continue
        # iterative DFS so that a 10 000-deep chain does not hit the recursion limit
        path: list[str] = []
        stack: list[tuple[str, Iterable[str]]] = [(root, iter(drvs[root].input_drefs().values()))]
        state[root] = 1
        path.append(root)
        while stack:
            node, deps = stack[-1]
            for dep in deps:
                if state.get(dep) == 1:
                    cycle = [*path[path.index(dep) :], dep]
                    names = " -> ".join(drvs[d].name for d in cycle)
                    raise InvalidPipelineError(f"the pipeline has a cycle: {names}")
                if state.get(dep) is None:
                    state[dep] = 1
                    path.append(dep)
                    stack.append((dep, iter(drvs[dep].input_drefs().values())))
                    break
            else:
                stack.pop()
                path.pop()
                state[node] = 2
                order.append(node)
    return order
