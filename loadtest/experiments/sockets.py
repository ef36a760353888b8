"""`python -m loadtest sockets`: what an instance's death or stop costs the users of open WebSockets.

A cluster of three uvicorn instances behind HAProxy per channel layer
(`deploy up --server uvicorn --channel-layer memory|redis`). In each
scenario, USERS chatters in one room connect through HAProxy (two per
instance, by round robin) and post every INTERVAL seconds; one *leaver* per
instance, connected straight to it, never reconnects once its socket drops
(a closed tab: its presence must lapse). Then one fault, recorded in the
history, and WINDOW seconds of load:

- kill: SIGKILL app1 (its sockets break: 1006), started again at the end;
- term: `kill --signal TERM` app1 (out of HAProxy, sockets closed with
  1001, then stopped), started again at the end;
- rolling: each instance stopped gracefully and started again in turn;
- scale: `scale 2` (app3 leaves gracefully), `scale 3` at the end.

Each fault runs with and without resume: resuming clients reconnect with
`?after=<last id held>`, close every gap they see by `prev`, and at the end
resume once more to fill what they missed; the others reconnect for live
messages only. Every figure comes from the history by the socket checkers
(loadtest/harness/socket_checkers.py): connections dropped and their close
codes, reconnect time p50/p99, acknowledged messages never held by a room
member, messages held twice, the room split (member pairs where one never
got the other's messages: the in-memory layer), ghost presence seconds,
and the verdict on the hypothesis below.
"""

import json
import threading
from itertools import product
from pathlib import Path

from deploy import cluster
from deploy.cluster import free_base_port
from loadtest.cli import chosen, listed
from loadtest.harness import checkers, history, load, socket_checkers, verdict
from loadtest.harness.accounts import prepare
from loadtest.harness.nemesis import Nemesis, rolling_restart
from loadtest.harness.socket_client import SocketChatter
from loadtest.harness.verdict import Check
from loadtest.reports import page
from loadtest.reports.svg import series_chart
from loadtest.reports.tables import Table

FAULTS = ("kill", "term", "rolling", "scale")
LAYERS = ("memory", "redis")
NAME = "sockets"
HELP = "what an instance's kill, stop, restart or scale-in costs WebSocket users, per channel layer"
INDEXED = True  # its report is listed in results/index.html
SCENARIOS = tuple(f"{fault}-{layer}{'' if resume else '-no-resume'}"
                  for fault, layer, resume in product(FAULTS, LAYERS, (True, False)))
INSTANCES = ("app1", "app2", "app3")
SOCKET_EXPIRY = 6  # seconds, instead of the site's 30: a killed instance's ghosts lapse within the window
SITE_ENV = {**load.SITE_ENV, "SOCKET_EXPIRY": str(SOCKET_EXPIRY)}
CATCH_UP_SECONDS = 20

HYPOTHESIS = [
    *(Check(name, "messages held twice by a user, or twice on one socket", "delivered_twice", 0, 0)
      for name in SCENARIOS),
    *(Check(name, "acknowledged messages never held by a room member (resume: late, never missing)",
            "undelivered_messages", 0, 0) for name in SCENARIOS if not name.endswith("no-resume")),
    *(Check(name, "sockets the stop dropped that were closed with 1001 (%)", "going_away_pct", 100, 100)
      for name in SCENARIOS if not name.startswith("kill")),
    # A rolling restart moves every user through every instance: no pair stays apart, so no prediction there.
    *(Check(name, "the in-memory layer splits the room: member pairs who never got each other's messages",
            "room_split_pairs", 1, None) for name in SCENARIOS
      if name.endswith("memory-no-resume") and not name.startswith("rolling")),
    *(Check(name, f"a killed instance's sockets stay online in Redis until they lapse (SOCKET_EXPIRY "
                  f"{SOCKET_EXPIRY} s), seconds", "ghost_seconds", 1, SOCKET_EXPIRY + 10)
      for name in SCENARIOS if name.startswith("kill-redis")),
    *(Check(name, "a socket closed by its instance, or one that dies with the in-memory layer, leaves the "
                  "online list at once, seconds", "ghost_seconds", 0, 3)
      for name in SCENARIOS if not name.startswith("kill-redis")),
]


def add_arguments(parser):
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    parser.add_argument("--users", type=int, default=6, help="chatters per scenario, through HAProxy")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between a chatter's posts")
    parser.add_argument("--window", type=float, default=12, help="seconds of load after the fault")
    parser.add_argument("--out", type=Path, default=Path("results") / "sockets")


def main(args):
    """Run the scenarios, print the table and the verdict; the exit status says whether the hypothesis held."""
    names = chosen(listed(args.scenarios), SCENARIOS)
    with history.History(Path(args.out) / history.FILE, experiment=NAME, command=args.run.command) as recorded:
        run_all(names, users=args.users, interval=args.interval, window=args.window, out=args.out,
                history_file=recorded)
    results, judged = report(args.out, args.run)
    print(table(results).markdown())
    return verdict.ended(args.out, judged)


def run_all(names, *, users, interval, window, out, history_file):
    """Each layer's cluster once, its scenarios in turn, into one history."""
    for layer in LAYERS:
        chosen = [name for name in names if name.split("-")[1] == layer]
        if not chosen:
            continue
        state_dir = Path(out) / "clusters" / layer
        deployed = cluster.up(instances=len(INSTANCES), server="uvicorn", sessions="db", presence="memory",
                              channel_layer=layer, port=free_base_port(), env=SITE_ENV, state_dir=state_dir)
        try:
            for name in chosen:
                run(name, deployed, users=users, interval=interval, window=window, history=history_file)
        finally:
            cluster.down(state_dir=state_dir)


def run(name, deployed, *, users, interval, window, history):
    """One scenario into the history: connect, load, the fault, the window, the mend, the catch-up."""
    fault, _, rest = name.partition("-")
    resume = not rest.endswith("no-resume")
    history.scenario = name
    state_dir = deployed.state_dir
    room = f"{name}-{history.now():.0f}"
    names = prepare(users + len(INSTANCES), state_dir=state_dir)
    chatters = [SocketChatter(history, deployed.url, user, room, resume=resume, held=0) for user in names[:users]]
    leavers = [SocketChatter(history, deployed.instance_url(node), user, room, resume=False, leaver=True)
               for node, user in zip(INSTANCES, names[users:])]
    history.sample(condition="started", parameters={"users": users, "interval": interval, "window": window,
                                                    "resume": resume, "leavers": [c.name for c in leavers],
                                                    "socket_expiry": SOCKET_EXPIRY})
    everyone = [*chatters, *leavers]
    for chatter in everyone:
        chatter.log_in()
    threads = [threading.Thread(target=c.run, args=(interval if c in chatters else None,)) for c in everyone]
    for thread in threads:
        thread.start()
    try:
        if load.wait(history, "connected", lambda: all(c.connections for c in everyone), 30) is None:
            raise RuntimeError(f"{name}: not every user connected within 30 s")
        load.settle(seconds=3)
        mend = _fault(fault, state_dir, history)
        load.settle(seconds=window)
        mend()
        for chatter in chatters:
            chatter.quiet.set()
        # Every post answered (or its socket gone) before the last id is read: none may come after it.
        load.wait(history, "quiet", lambda: not any(c.pending for c in chatters), CATCH_UP_SECONDS)
        through = max(socket_checkers.acknowledged(history.events(name)), default=0)
        caught = [chatter.catch_up(through, CATCH_UP_SECONDS) for chatter in chatters]
        history.sample(condition="caught up", caught_up=sum(caught))
    finally:
        for chatter in everyone:
            chatter.stop()
        for thread in threads:
            thread.join(timeout=10)
    return socket_checkers.figures(history.events(name))


def _fault(fault, state_dir, history):
    """Inject the fault through the nemesis (recorded as observed); return what mends it at the window's end."""
    nemesis = Nemesis(history, state_dir=state_dir)
    if fault in ("kill", "term"):
        nemesis.act(fault, "app1")
        return lambda: nemesis.act("start", "app1")
    if fault == "scale":
        nemesis.act("scale", fields={"count": len(INSTANCES) - 1})
        return lambda: nemesis.act("scale", fields={"count": len(INSTANCES)})
    nemesis.run(rolling_restart(list(INSTANCES)))
    return lambda: None


COLUMNS = [
    ("scenario", lambda r: r["scenario"]),
    ("acked", lambda r: str(r["acknowledged"])),
    ("dropped", lambda r: f"{r['dropped']} ({', '.join(f'{k}: {v}' for k, v in sorted(r['close_codes'].items()))})"
     if r["dropped"] else "0"),
    ("reconnect p50 / p99 s", lambda r: f"{_s(r['reconnect_p50'])} / {_s(r['reconnect_p99'])}"),
    ("never held (messages)", lambda r: str(r["undelivered_messages"])),
    ("held twice", lambda r: str(r["delivered_twice"])),
    ("room split (pairs)", lambda r: str(r["room_split_pairs"])),
    ("ghost s", lambda r: _s(r["ghost_seconds"])),
    ("resumes", lambda r: str(r["resumes"])),
]


def _s(value):
    return "-" if value is None else f"{value:g}"


def table(results):
    """The summary, one row per scenario."""
    return Table(tuple(COLUMNS), tuple(results))


def chart(events, name):
    """Per second: deliveries held, acknowledged posts, dropped sockets; the faults marked."""
    counts = checkers.timeline(events, {
        "held": lambda op: op["what"] == "receive" and op["value"].get("held"),
        "acked posts": lambda op: op["what"] == "post" and op["outcome"] == "ok",
        "dropped": lambda op: op["what"] == "disconnect" and op["value"]["by"] == "server",
    })
    xs = list(range(len(next(iter(counts.values())))))
    faults = checkers.faults(events)
    bands = [(f["effect"] or f["sent"], f["ended"], f["action"]) for f in faults if f["ended"] is not None]
    markers = [(f["effect"] or f["sent"], f["action"]) for f in faults if f["ended"] is None]
    return series_chart(name, xs, counts, x_label="seconds", unit="/s", markers=markers, bands=bands)


def report(out, run, *, finished=None):
    """From out/history.jsonl alone: the figures, charts, verdict, sockets.json and the page. (results, verdict)."""
    out = Path(out)
    _, events = history.load(out / history.FILE)
    split = history.scenarios(events)
    by_scenario = {name: {"scenario": name, **socket_checkers.figures(mine)} for name, mine in split.items()}
    results = list(by_scenario.values())
    judged = verdict.judge(HYPOTHESIS, by_scenario)
    (out / "sockets.json").write_text(json.dumps({"command": run.command, "results": results, "verdict": judged},
                                                 indent=1))
    charts = []
    for name, mine in split.items():
        path = out / f"sockets-{name}.svg"
        path.write_text(chart(mine, name))
        charts.append(path.read_text())
    page.write(out, run, title="What an instance's death costs an open WebSocket", verdict=judged,
               finished=finished, headline="; ".join(f"{r['scenario']}: {r['undelivered_messages']} of "
                                                     f"{r['acknowledged']} acknowledged never held" for r in results),
               sections=[("", page.paragraphs(
                   "Three uvicorn instances behind HAProxy per channel layer; in each scenario a room "
                   "of chatters through HAProxy, posting, and one leaver per instance that never reconnects; one "
                   "fault, then the window. Every figure is computed from history.jsonl by "
                   f"loadtest/harness/socket_checkers.py (recheck: python -m loadtest recheck {out}).")),
                         ("", table(results).html()),
                         ("Timelines", page.charts(charts))])
    return results, judged
