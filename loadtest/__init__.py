"""Locust journeys, the kill experiment and the benchmarks.

`locust -f loadtest/journeys.py` loads the Locust users. Locust's
`-f loadtest` would load every module of this folder and of its subfolders
(harness/) whose name does not start with `_`, so the journeys are named
by their file: the experiment's helpers are `_experiment.py`, `_audit.py`,
`harness/` and the rest, and `python -m loadtest` runs them.
"""
