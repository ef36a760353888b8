"""python -m deploy: run, inspect and break a local cluster of the site."""

import argparse
import json
import os
import sys
from pathlib import Path

from deploy import cluster, options
from deploy.errors import DeployError


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m deploy", description=__doc__)
    parser.add_argument(
        "--state-dir", type=Path,
        default=Path(os.environ.get("DEPLOY_STATE_DIR", cluster.DEFAULT_STATE_DIR)),
        help="folder for the cluster's files (default: state/cluster, or $DEPLOY_STATE_DIR)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    options.add_up_arguments(commands.add_parser("up", help="start a cluster in the background"))

    state = commands.add_parser("status", help="what runs, and what HAProxy thinks of it")
    state.add_argument("--json", action="store_true")

    kill = commands.add_parser("kill", help="crash an instance or a store node (SIGKILL), or stop an instance "
                                            "gracefully")
    kill.add_argument("name", help="app1.., or a store node: redis1.., sentinel1.., pg1.., etcd1.., "
                                   "redis:primary, pg:primary, etcd:leader")
    kill.add_argument("--signal", choices=("KILL", "TERM"), default="KILL",
                      help="TERM: drain it from the load balancer first; no request fails")
    kill.add_argument("--process", help="one process of the node alone: postgres, under --pg-ha patroni "
                                        "(Patroni starts it again in place)")

    start = commands.add_parser("start", help="bring a stopped instance or store node back")
    start.add_argument("name")

    for verb, what in (("pause", "freeze an instance or store node (SIGSTOP)"), ("resume", "unfreeze it (SIGCONT)")):
        commands.add_parser(verb, help=what).add_argument("name")

    commands.add_parser("powerloss", help="every node of a store (redis, postgres) loses what it had not fsynced, "
                                          "at one instant, and starts again (up --power-loss)").add_argument("name")

    promote = commands.add_parser("promote", help="promote the PostgreSQL standby that received the most WAL")
    promote.add_argument("--force", action="store_true",
                         help="even while the old primary runs: two primaries, as behind a partition")

    slow = commands.add_parser("latency", help="add MS milliseconds each way to every connection to and from a "
                                               "node or instance (0 removes it); delays add along a path")
    slow.add_argument("name", help="app1.., redis1.., sentinel1.., pg1.., redis:primary, pg:primary")
    slow.add_argument("ms", type=float)
    slow.add_argument("--jitter", type=float, default=0, metavar="MS",
                      help="each chunk's delay drawn from MS either side of the latency (order kept)")

    stall = commands.add_parser("stall", help="deliver nothing to or from a node or instance for SECONDS, its "
                                              "connections open; then deliver what waited")
    stall.add_argument("name")
    stall.add_argument("seconds", type=float)

    scale = commands.add_parser("scale", help="add or remove instances while traffic flows")
    scale.add_argument("count", type=int)

    cut = commands.add_parser("partition", help="cut nodes or instances off from the rest, silently (--netns)")
    cut.add_argument("isolated", help="names, comma-separated: app1, redis1, sentinel2, pg1, redis:primary, ...")
    cut.add_argument("--from", dest="others", default="",
                     help="cut them off from these names only (default: from everything else)")
    commands.add_parser("heal", help="remove every partition")

    commands.add_parser("images", help="build the images the swarm runtime runs (Debian 13 base, site, loadgen), "
                                       "starting dockerd if none runs")
    commands.add_parser("down", help="stop everything `up` started; remove its files but the logs (under "
                                     "Swarm: the stack, and the swarm and dockerd if the lab started them)")
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
        up = cluster.up(**options.up_keywords(args), **where)
        print(f"site:            {up.url}/")
        print(f"haproxy stats:   {up.stats_url}")
        print(f"{len(up.instances)} instances ({args.lb}, {args.server}"
              + (f", channel layer {up.channel_layer}" if up.channel_layer else "") + f"), sessions: {args.sessions}, "
              f"presence: {args.presence}, database: {up.db}"
              + (f", on Docker Swarm (stack {up.stack})" if up.runs_on == "swarm" else "")
              + ("" if args.durable else " (not durable: no fsync)")
              + ("" if args.relays else ", without relays"))
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
        print(cluster.logs(args.name, lines=args.lines, **where))
    elif args.command == "images":
        for image, size in cluster.images(say=print).items():
            print(f"{image}: {size / 1e6:.0f} MB")


def action(args):
    """The fault vocabulary's (action, target, fields) a command line asks for (deploy/actions.py)."""
    if args.command == "kill":
        return ("term" if args.signal == "TERM" else "kill"), args.name, (
            {"process": args.process} if args.process else {})
    if args.command == "partition":
        return "partition", names(args.isolated), {"from": names(args.others)}
    if args.command == "promote":
        return "promote", None, {"force": args.force}
    if args.command == "scale":
        return "scale", None, {"count": args.count}
    if args.command == "latency":
        return "latency", args.name, {"ms": args.ms, "jitter": args.jitter}
    if args.command == "stall":
        return "stall", args.name, {"seconds": args.seconds}
    return args.command, getattr(args, "name", None), {}


def names(text):
    return [name.strip() for name in text.split(",") if name.strip()]


def print_status(state, *, as_json):
    if as_json:
        print(json.dumps(state, indent=2))
        return
    print(f"site {state['url']}/  stats {state['stats_url']}  lb {state['lb']}  "
          f"sessions {state['sessions']}  presence {state['presence']}  db {state['db']}")
    if state.get("relays") is False:
        print("relays: none (up --no-relays): each node and instance on its own port; latency and stall refused")
    if state.get("network"):
        print(f"network {state['network']}; partitions: "
              + ("; ".join(f"{', '.join(p['isolated'])} | {', '.join(p['from']) or 'everything else'}"
                           for p in state["partitions"]) or "none"))
    # Under Swarm a row has no pid but a container: that column shows it instead.
    swarm = state.get("runtime") == "swarm"
    if swarm:
        print(f"stack {state['stack']} on Docker Swarm")
    print(f"{'name':<10}{'port':>6}{'container' if swarm else 'pid':>13}  {'alive':<7}{'lb_state'}")
    for row in state["instances"]:
        print(f"{row['name']:<10}{row['port']:>6}{_who(row):>13}  {'yes' if row['alive'] else 'no':<7}"
              f"{row['lb_state']}{away(row)}"
              + (f"  sockets {row['sockets']}" if row.get("sockets") is not None else ""))
    for row in [{"name": "haproxy", "port": state["url"].rsplit(":", 1)[1], **state["haproxy"]},
                *state["stores"]]:
        print(f"{row['name']:<10}{row['port'] or 'socket':>6}{_who(row):>13}  {'yes' if row['alive'] else 'no':<7}"
              f"{row.get('role') or ''}" + (f" {row['slots']}" if row.get("slots") else "") + away(row))


def away(row):
    """The row's latency, in words, if it has one."""
    if not row.get("latency_ms"):
        return ""
    return f" ({row['latency_ms']:g} ms away" + (f" +-{row['jitter_ms']:g}" if row.get("jitter_ms") else "") + ")"


def _who(row):
    """A row's pid, or under Swarm its container (none: "-")."""
    return str(row["pid"] if row["pid"] is not None else row.get("container") or "-")

if __name__ == "__main__":
    sys.exit(main())
