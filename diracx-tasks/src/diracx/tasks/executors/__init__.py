"""Executors: what runs one build on a worker (entry points ``diracx.executors``).

Keep this module free of imports: ``python -m diracx.tasks.executors.pyrunner``
imports it at the start of every python build.
"""
