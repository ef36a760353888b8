"""One module per experiment: its NAME, HELP, `add_arguments(parser)` and `main(args)`.

Each also states its schedule, load and hypothesis. A module named after an
experiment with a suffix (`fate_lease.py`) holds a part of that experiment;
`configs.py` holds the configurations (SESSIONS[+LB][@TOPOLOGY]) the
cluster experiments share.
"""
