"""`deploy up`'s options: their argument definitions and how they become a call of cluster.up, in one place.

The command line (deploy/__main__.py) and the control room's start form
(control/) both build their parser with add_up_arguments and start with
up_keywords, so an option added here appears in both, with the same
defaults, help and validation messages.
"""

import argparse
import re

from deploy import web
from deploy.errors import DeployError
from deploy.topology import Topology

RUNTIMES = ("processes", "swarm")  # where a cluster runs: this machine's processes, or Docker Swarm services


def add_up_arguments(parser):
    """Add every option of `deploy up` to an argparse parser (or argument group)."""
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--sessions", default="redis", help="a SESSION_STORE: memory, redis, db, ...")
    parser.add_argument("--presence", default="redis", help="a PRESENCE_STORE: memory or redis")
    parser.add_argument("--lb", default="roundrobin", help="roundrobin or sticky")
    parser.add_argument("--db", help="sqlite or postgres (default: sqlite; postgres under --runtime swarm)")
    parser.add_argument("--runtime", default="processes", choices=RUNTIMES,
                        help="processes: this machine's (default); swarm: Docker Swarm services from a stack file "
                             "(python -m deploy images first; docs/operations/swarm.md)")
    parser.add_argument("--port", type=int, default=8000, help="the load balancer's port")
    parser.add_argument("--server", default=web.DEFAULT,
                        help="how each instance is served: gthread:N (default gthread:8), sync, gevent or granian:N "
                             "(WSGI), or uvicorn (ASGI: HTTP and the chat's WebSockets)")
    parser.add_argument("--channel-layer", default="",
                        help="with --server uvicorn: how instances reach each other's sockets; memory (each only its "
                             "own) or redis (default when --presence is redis)")
    parser.add_argument("--redis", default="single",
                        help="single; sentinel: a primary, replicas, three Sentinels; cluster: Redis Cluster, "
                             "shards of a primary and a replica")
    parser.add_argument("--redis-shards", type=int, default=3, help="with --redis cluster: primaries (default 3)")
    parser.add_argument("--redis-replicas", type=int, default=2, help="with --redis sentinel (default 2)")
    parser.add_argument("--redis-sync", type=int, default=0,
                        help="replicas that must confirm each session write and logout (WAIT); with sentinel, also "
                             "connected for any write; with --redis cluster, 0 or 1 (each shard has one replica)")
    parser.add_argument("--pg-standbys", type=int, default=0, help="PostgreSQL standbys streaming from the primary")
    parser.add_argument("--pg-sync", default="off", help='off (asynchronous), "ANY k" or "FIRST k"')
    parser.add_argument("--pg-ha", default="none",
                        help="none (deploy promote, by hand) or patroni: Patroni on etcd members fails over by itself")
    parser.add_argument("--redis-persistence", default="none",
                        help="none (the default: a restarted Redis is empty), everysec or always: the append-only "
                             "file, fsynced once a second or before each write is answered")
    parser.add_argument("--pg-synchronous-commit", default="on",
                        help="on (the default), or off: a commit answers before its WAL is flushed")
    parser.add_argument("--power-loss", action="store_true",
                        help="Redis's and PostgreSQL's data folders on a file system that can drop what was not "
                             "fsynced, for `deploy powerloss STORE` (root, FUSE; slower writes)")
    parser.add_argument("--etcd-members", type=int, default=3,
                        help="with --sessions etcd: members of the etcd cluster, 3, 5 or 7 (default 3)")
    parser.add_argument("--cpu-quota", type=float, metavar="CORES",
                        help="cap each instance at this many cores (a cgroup CPU quota), e.g. 0.25")
    parser.add_argument("--site-cpus", metavar="LIST",
                        help="run the instances on these CPUs (e.g. 0), HAProxy and the stores on the others")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a site setting for every instance, e.g. PASSWORD_ITERATIONS=1000")
    parser.add_argument("--netns", action="store_true",
                        help="every store node and instance in a network namespace of its own, so that `partition` "
                             "can cut them apart (needs root); HAProxy stays on loopback")
    parser.add_argument("--latency", default="", metavar="NAME=MS,...",
                        help="milliseconds added each way to every connection to and from these nodes or instances "
                             "from the start, e.g. redis2=2,redis3=30 (change later with: latency NAME MS)")
    parser.add_argument("--no-relays", dest="relays", action="store_false",
                        help="no latency relay in front of the nodes and instances: each listens on its own port, "
                             "as in a real deployment (for benchmarks of the site's own cost); latency and stall "
                             "are refused")
    parser.add_argument("--no-durable", dest="durable", action="store_false",
                        help="for benchmarks: PostgreSQL without fsync, SQLite synchronous=NORMAL; "
                             "an OS crash can lose acknowledged messages")


def up_keywords(args):
    """cluster.up's keyword arguments (state_dir aside) for parsed `deploy up` options; DeployError for a bad --env."""
    return dict(
        instances=args.instances, sessions=args.sessions, presence=args.presence, lb=args.lb, port=args.port,
        db=args.db or ("postgres" if args.runtime == "swarm" else "sqlite"), runtime=args.runtime,
        env=parse_env(args.env), server=args.server, channel_layer=args.channel_layer, durable=args.durable,
        cpu_quota=args.cpu_quota,
        site_cpus=args.site_cpus, namespaces=args.netns, latency=parse_latency(args.latency), relays=args.relays,
        topology=Topology(redis=args.redis, redis_replicas=args.redis_replicas, redis_sync=args.redis_sync,
                          redis_shards=args.redis_shards, pg_standbys=args.pg_standbys, pg_sync=args.pg_sync,
                          pg_ha=args.pg_ha, etcd_members=args.etcd_members, redis_persistence=args.redis_persistence,
                          pg_synchronous_commit=args.pg_synchronous_commit, power_loss=args.power_loss),
    )


def parse_latency(text):
    """{name: milliseconds} from NAME=MS,NAME=MS."""
    latency = {}
    for pair in filter(None, (item.strip() for item in text.split(","))):
        name, sep, value = pair.partition("=")
        try:
            latency[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise DeployError(f"--latency wants NAME=MS,..., e.g. redis2=2,redis3=30; not {pair!r}")
    return latency


def parse_env(pairs):
    """{name: value} from NAME=VALUE pairs: site settings only. A name that is not an upper-case identifier, or
    that would change how the instance's process starts (LD_*, PYTHON*, PATH, HOME, DJANGO_SETTINGS_MODULE) is
    refused: a start request from the control room must not run code of its choosing."""
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not re.fullmatch(r"[A-Z][A-Z0-9_]*", name):
            raise DeployError(f"--env wants NAME=VALUE with NAME in capitals, not {pair!r}")
        if name.startswith(("LD_", "PYTHON")) or name in ("PATH", "HOME", "DJANGO_SETTINGS_MODULE"):
            raise DeployError(f"--env {name}: a site setting, not how the instance's process starts")
        env[name] = value
    return env


def up_options(options):
    """Parsed `deploy up` options from a mapping {long option name, underscores for hyphens: value}.

    DeployError names the first option that is unknown or of the wrong type,
    or gives argparse's own message (as_argv).
    """
    parser = argparse.ArgumentParser(prog="up", add_help=False)
    add_up_arguments(parser)
    return _parse(parser, as_argv(parser, options))


def as_argv(parser, options):
    """The command line a mapping of options stands for, for `parser`'s options, checked by parsing it.

    Keys are long option names without the dashes, underscores for hyphens;
    a value is a JSON string, number or boolean (a flag: true to give it),
    or for an option given several times (`append`) a list of strings.
    DeployError names the first key unknown or of the wrong type, or gives
    argparse's own message for a value it refuses.
    """
    known = {flag[2:].replace("-", "_"): action for action in parser._actions for flag in action.option_strings
             if flag.startswith("--") and action.dest != "help"}
    argv = []
    for key, value in options.items():
        action = known.get(key)
        if action is None:
            raise DeployError(f"no option {key!r}; the options are: {', '.join(known)}")
        flag = action.option_strings[-1]
        if action.nargs == 0:
            if not isinstance(value, bool):
                raise DeployError(f"option {key!r} is a flag: true or false")
            argv += [flag] if value else []
        elif isinstance(action, argparse._AppendAction):
            if not (isinstance(value, list) and all(isinstance(item, str) for item in value)):
                raise DeployError(f"option {key!r} wants a list of strings")
            argv += [f"{flag}={item}" for item in value]
        elif isinstance(value, (str, int, float)) and not isinstance(value, bool):
            argv.append(f"{flag}={value}")
        else:
            raise DeployError(f"option {key!r} wants a string or a number")
    _parse(parser, argv)
    return argv


def _parse(parser, argv):
    """parser.parse_args(argv), with argparse's complaint raised as a DeployError instead of printed and exited."""
    def refuse(message):
        raise DeployError(message)

    parser.error = refuse
    return parser.parse_args(argv)
