"""The benchmarks: each a command module (NAME, HELP, `add_arguments(parser)`, `main(args)`) over wrk or timed calls."""
