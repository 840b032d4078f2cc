"""Errors shared by every layer. Each carries a message meant for the user."""

from __future__ import annotations


class DiracxError(Exception):
    """Base class of the errors DiracX reports to users."""


class InvalidPipelineError(DiracxError):
    """A submitted pipeline is malformed: a cycle, a hash mismatch, a missing input..."""


class UnknownExecutorError(InvalidPipelineError):
    """A derivation names an executor this installation does not have."""


class CorruptObjectError(DiracxError):
    """A store object's bytes do not hash to its digest."""


class ObjectNotFoundError(DiracxError):
    """A store object is absent."""


class InvalidTreeError(DiracxError):
    """A tree manifest is malformed or unsafe (absolute paths, '..', paths through symlinks)."""


class VersionMismatchError(DiracxError):
    """Installed diracx-* distributions do not all carry the same version."""


class ServiceUnavailableError(DiracxError):
    """The service could not be reached, or the connection broke before it answered.

    Safe to retry once the service is back: a submission is recorded whole or not
    at all, and submitting the same pipeline again reuses whatever was recorded.
    """


class ConflictError(DiracxError):
    """The request does not fit the object's state: killing a job that already ended..."""


class ForbiddenError(DiracxError):
    """The caller may not do this: another user's object without VOAdmin, a quota reached..."""
