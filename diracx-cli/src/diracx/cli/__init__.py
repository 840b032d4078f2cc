"""``dirac``: the DiracX command line."""
