"""python -m loadtest COMMAND: the experiments and benchmarks, each a module with its own arguments.

Every command module has NAME, HELP, `add_arguments(parser)` and
`main(args) -> exit status`; this file only builds one subcommand per module
and runs the one named. With no command (or an option first) it runs the
kill experiment, `run`. A module with INDEXED writes a page that
results/index.html lists, so the index is written again after it.
"""

import argparse
import sys

from deploy.cluster import DeployError
from loadtest import recheck
from loadtest.bench import against, posts, presence, profile, replication, servers, sessions, shards, stores
from loadtest.bench import sockets as bench_sockets
from loadtest.experiments import (
    capacity,
    etcd_loss,
    fate,
    kill,
    powerloss,
    quorum,
    scaling,
    scorecard,
    sockets,
    split_brain,
    sticky,
)
from loadtest.reports import index, page

# In the order `--help` lists them: the experiments, then the benchmarks, then the run's tools.
COMMANDS = [kill, capacity, scaling, sticky, stores, profile, servers, against, shards, replication, sessions, presence,
            posts, bench_sockets, quorum, split_brain, fate, sockets, powerloss, etcd_loss, recheck, scorecard, index]


def build_parser():
    """The command line: one subcommand per command module (each has its page under docs/)."""
    parser = argparse.ArgumentParser(prog="python -m loadtest", description=kill.DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        sub = commands.add_parser(module.NAME, help=module.HELP, description=getattr(module, "DESCRIPTION", None),
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sub)
        sub.set_defaults(module=module)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    run = page.Run.of(argv)
    if not argv or argv[0].startswith("-"):
        argv.insert(0, kill.NAME)
    args = build_parser().parse_args(argv)
    args.run = run
    try:
        code = args.module.main(args)
    except (DeployError, ValueError, RuntimeError) as exc:
        print(f"loadtest: {exc}", file=sys.stderr)
        return 1
    if getattr(args.module, "INDEXED", False) and args.out.parent.name == "results":
        # elsewhere the parent may be any folder: /tmp, the checkout
        try:
            index.written(args.out.parent)
        except OSError as failure:
            print(f"loadtest: the index of runs was not written: {failure}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
