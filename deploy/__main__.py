"""python -m deploy: run, inspect and break a local cluster of the site."""

import argparse
import json
import os
import sys
from pathlib import Path

from deploy import cluster, web
from deploy.errors import DeployError
from deploy.topology import Topology


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__)
    parser.add_argument(
        "--state-dir", type=Path,
        default=Path(os.environ.get("DEPLOY_STATE_DIR", cluster.DEFAULT_STATE_DIR)),
        help="folder for the cluster's files (default: state/cluster, or $DEPLOY_STATE_DIR)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="start a cluster in the background")
    up.add_argument("--instances", type=int, default=3)
    up.add_argument("--sessions", default="redis", help="a SESSION_STORE: memory, redis, db, ...")
    up.add_argument("--presence", default="redis", help="a PRESENCE_STORE: memory or redis")
    up.add_argument("--lb", default="roundrobin", help="roundrobin or sticky")
    up.add_argument("--db", default="sqlite", help="sqlite or postgres")
    up.add_argument("--port", type=int, default=8000, help="the load balancer's port")
    up.add_argument("--server", default=web.DEFAULT,
                    help="how each instance is served: gthread:N (default gthread:8), sync, gevent or granian:N "
                         "(WSGI), or uvicorn (ASGI: HTTP and the chat's WebSockets)")
    up.add_argument("--channel-layer", default="",
                    help="with --server uvicorn: how instances reach each other's sockets; memory (each only its "
                         "own) or redis (default when --presence is redis)")
    up.add_argument("--redis", default="single",
                    help="single; sentinel: a primary, replicas, three Sentinels; cluster: Redis Cluster, "
                         "shards of a primary and a replica")
    up.add_argument("--redis-shards", type=int, default=3, help="with --redis cluster: primaries (default 3)")
    up.add_argument("--redis-replicas", type=int, default=2, help="with --redis sentinel (default 2)")
    up.add_argument("--redis-sync", type=int, default=0,
                    help="replicas that must confirm each session write and logout (WAIT); with sentinel, also "
                         "connected for any write; with --redis cluster, 0 or 1 (each shard has one replica)")
    up.add_argument("--pg-standbys", type=int, default=0, help="PostgreSQL standbys streaming from the primary")
    up.add_argument("--pg-sync", default="off", help='off (asynchronous), "ANY k" or "FIRST k"')
    up.add_argument("--etcd-members", type=int, default=3,
                    help="with --sessions etcd: members of the etcd cluster, 3, 5 or 7 (default 3)")
    up.add_argument("--cpu-quota", type=float, metavar="CORES",
                    help="cap each instance at this many cores (a cgroup CPU quota), e.g. 0.25")
    up.add_argument("--site-cpus", metavar="LIST",
                    help="run the instances on these CPUs (e.g. 0), HAProxy and the stores on the others")
    up.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="a site setting for every instance, e.g. PASSWORD_ITERATIONS=1000")
    up.add_argument("--netns", action="store_true",
                    help="every store node and instance in a network namespace of its own, so that `partition` "
                         "can cut them apart (needs root); HAProxy stays on loopback")
    up.add_argument("--no-durable", dest="durable", action="store_false",
                    help="for benchmarks: PostgreSQL without fsync, SQLite synchronous=NORMAL; "
                         "an OS crash can lose acknowledged messages")

    state = commands.add_parser("status", help="what runs, and what HAProxy thinks of it")
    state.add_argument("--json", action="store_true")

    kill = commands.add_parser("kill", help="crash an instance or a store node (SIGKILL), or stop an instance "
                                            "gracefully")
    kill.add_argument("name", help="app1.., or a store node: redis1.., sentinel1.., pg1.., etcd1.., "
                                   "redis:primary, pg:primary, etcd:leader")
    kill.add_argument("--signal", choices=("KILL", "TERM"), default="KILL",
                      help="TERM: drain it from the load balancer first; no request fails")

    start = commands.add_parser("start", help="bring a stopped instance or store node back")
    start.add_argument("name")

    for verb, what in (("pause", "freeze an instance or store node (SIGSTOP)"), ("resume", "unfreeze it (SIGCONT)")):
        commands.add_parser(verb, help=what).add_argument("name")

    promote = commands.add_parser("promote", help="promote the PostgreSQL standby that received the most WAL")
    promote.add_argument("--force", action="store_true",
                         help="even while the old primary runs: two primaries, as behind a partition")

    scale = commands.add_parser("scale", help="add or remove instances while traffic flows")
    scale.add_argument("count", type=int)

    cut = commands.add_parser("partition", help="cut nodes or instances off from the rest, silently (--netns)")
    cut.add_argument("isolated", help="names, comma-separated: app1, redis1, sentinel2, pg1, redis:primary, ...")
    cut.add_argument("--from", dest="others", default="",
                     help="cut them off from these names only (default: from everything else)")
    commands.add_parser("heal", help="remove every partition")

    commands.add_parser("down", help="stop everything `up` started; remove its files but the logs")
    clean = commands.add_parser("cleanup", help="remove the namespaces, links and partition rules of the cluster "
                                                "in --state-dir, even with its record gone")
    clean.add_argument("--all", dest="everything", action="store_true",
                       help="those of every cluster this project made on this machine (the names it makes, "
                            "and only those; a cluster whose namespaces hold a process is left)")

    logs = commands.add_parser("logs", help="show an instance's (or a store's) log")
    logs.add_argument("name")
    logs.add_argument("-n", "--lines", type=int, default=50)

    args = parser.parse_args(argv)
    try:
        run(args)
    except DeployError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        return 1
    return 0


def run(args):
    where = {"state_dir": args.state_dir}
    if args.command == "up":
        up = cluster.up(
            instances=args.instances, sessions=args.sessions, presence=args.presence,
            lb=args.lb, port=args.port, db=args.db, env=parse_env(args.env), server=args.server,
            durable=args.durable, cpu_quota=args.cpu_quota, site_cpus=args.site_cpus,
            channel_layer=args.channel_layer,
            topology=Topology(redis=args.redis, redis_replicas=args.redis_replicas, redis_sync=args.redis_sync,
                              redis_shards=args.redis_shards,
                              pg_standbys=args.pg_standbys, pg_sync=args.pg_sync,
                              etcd_members=args.etcd_members),
            namespaces=args.netns, **where,
        )
        print(f"site:            {up.url}/")
        print(f"haproxy stats:   {up.stats_url}")
        print(f"{len(up.instances)} instances ({args.lb}, {args.server}"
              + (f", channel layer {up.channel_layer}" if up.channel_layer else "") + f"), sessions: {args.sessions}, "
              f"presence: {args.presence}, database: {args.db}"
              + ("" if args.durable else " (not durable: no fsync)"))
        if up.cpu:
            print(f"cpu limits (cgroup {up.cpu['version']}): "
                  + ", ".join(part for part in (
                      up.cpu["quota"] and f"{up.cpu['quota']:g} cores per instance",
                      up.cpu["site_cpus"] and f"instances on CPU {up.cpu['site_cpus']}, "
                                              f"HAProxy and stores on CPU {up.cpu['rest_cpus']}") if part))
    elif args.command == "status":
        print_status(cluster.status(**where), as_json=args.json)
    elif args.command in cluster.ACTIONS:
        print(cluster.act(*action(args), **where))
    elif args.command == "cleanup":
        print(f"removed {cluster.cleanup(args.state_dir, everything=args.everything)} namespaces")
    elif args.command == "down":
        print("stopped" if cluster.down(**where) else "no cluster was up")
    elif args.command == "logs":
        path = cluster.log_path(args.name, **where)
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        print("\n".join(lines[-args.lines:]))


def action(args):
    """The fault vocabulary's (action, target, fields) a command line asks for (deploy/actions.py)."""
    if args.command == "kill":
        return ("term" if args.signal == "TERM" else "kill"), args.name, {}
    if args.command == "partition":
        return "partition", names(args.isolated), {"from": names(args.others)}
    if args.command == "promote":
        return "promote", None, {"force": args.force}
    if args.command == "scale":
        return "scale", None, {"count": args.count}
    return args.command, getattr(args, "name", None), {}


def names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def parse_env(pairs):
    env = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise DeployError(f"--env wants NAME=VALUE, not {pair!r}")
        env[name] = value
    return env


def print_status(state, *, as_json):
    if as_json:
        print(json.dumps(state, indent=2))
        return
    print(f"site {state['url']}/  stats {state['stats_url']}  lb {state['lb']}  "
          f"sessions {state['sessions']}  presence {state['presence']}  db {state['db']}")
    if state.get("network"):
        print(f"network {state['network']}; partitions: "
              + ("; ".join(f"{', '.join(p['isolated'])} | {', '.join(p['from']) or 'everything else'}"
                           for p in state["partitions"]) or "none"))
    print(f"{'name':<10}{'port':>6}{'pid':>9}  {'alive':<7}{'lb_state'}")
    for row in state["instances"]:
        print(f"{row['name']:<10}{row['port']:>6}{row['pid']:>9}  {'yes' if row['alive'] else 'no':<7}"
              f"{row['lb_state']}" + (f"  sockets {row['sockets']}" if row.get("sockets") is not None else ""))
    for row in [{"name": "haproxy", "port": state["url"].rsplit(":", 1)[1], **state["haproxy"]},
                *state["stores"]]:
        print(f"{row['name']:<10}{row['port'] or 'socket':>6}{row['pid']:>9}  {'yes' if row['alive'] else 'no':<7}"
              f"{row.get('role', '')}" + (f" {row['slots']}" if row.get("slots") else ""))


if __name__ == "__main__":
    sys.exit(main())
