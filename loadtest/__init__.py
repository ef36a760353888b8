"""Locust journeys, the kill experiment and the benchmarks.

`locust -f loadtest` loads every module of this folder whose name does not
start with `_` as a locustfile, so journeys.py is the only such module: the
experiment's helpers are `_experiment.py`, `_audit.py` and the rest, and
`python -m loadtest` runs them.
"""
