"""The experiments, the benchmarks and their reports: `python -m loadtest COMMAND`.

The layers, each a package: `locustfiles/` what `locust -f` loads (the
chat users and the capacity step's load shape), `harness/` what every
experiment shares (the site's client, the recorded history, the load, the
checkers and the verdict), `experiments/` one module per experiment,
`bench/` the benchmarks, `reports/` the pages, charts and tables. A
command is a module with NAME, HELP, `add_arguments(parser)` and
`main(args)`; `__main__.py` loops over them.
"""
