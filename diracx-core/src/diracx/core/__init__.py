"""DiracX core: the data model (derivations, trees, realizations), hashing, the store and settings.

This package imports no other diracx package, does no HTTP and no SQL.
"""
