"""gubbins: an example DiracX extension, and a template for real ones.

It adds, through DiracX's entry point groups (see ``pyproject.toml``):

- a service, ``/api/lollygag`` (:mod:`gubbins.router`), on its own DB class
  (:mod:`gubbins.db`) that the service opens when it starts;
- a command, ``dirac lollygag list | add`` (:mod:`gubbins.cli`);
- a stricter access policy for DiracX's own ``GET /api/config`` (:mod:`gubbins.policies`);
- a minimum client version (:func:`min_client_version`).
"""

from __future__ import annotations

import os


def min_client_version() -> str:
    """The oldest ``diracx`` client gubbins accepts.

    A real extension returns a constant (the release that brought what its commands need).
    gubbins reads ``GUBBINS_MIN_CLIENT_VERSION`` (default: no constraint) so that, installed
    in the DiracX development workspace, it changes nothing for DiracX's own tests.
    """
    return os.environ.get("GUBBINS_MIN_CLIENT_VERSION", "0.0.0")
