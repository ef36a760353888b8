"""The benchmarks: each a command module (NAME, HELP, `add_arguments(parser)`, `run(args)`) over wrk or timed calls."""
