"""Split brain, counted the Jepsen way: acknowledged writes that a partition and its heal lose.

A cluster with every store node and instance in a namespace of its own
(`deploy up --netns`) is split in two. The minority side holds the old
primary and app1; the majority side holds the replicas (or standbys) and
app2, and gets a new primary: Sentinel promotes a replica by itself;
PostgreSQL has no arbiter, so the run promotes a standby as an operator who
cannot see the old primary would. Users on both sides go on logging in and
writing to their sessions, each pinned to one side by talking to its
instance directly, never through HAProxy. Then the network heals, the
cluster converges (Sentinel turns the old Redis primary into a replica; the
old PostgreSQL primary is stopped and rejoins as a standby, as an operator
does), and every user reads back what it was told was saved.

With the sessions in etcd (a Raft store of three members), the minority
side holds the member that leads at the cut and app1: Raft lets no side
without a majority write, so the old leader's side should refuse, and the
majority side elects a leader of its own; after the heal the old leader
follows the new one.

Counted per side: session writes acknowledged (200) and then lost (the
counter read back is lower), logins acknowledged and then lost (the session
is gone: 401), presence heartbeats acknowledged and then lost (the user is
not online after the heal), requests refused (anything but 200), and the
seconds from the heal until every node agrees on one primary (on Redis
Cluster, one in each shard). For
PostgreSQL also the writes the old primary holds that its users were told
were refused (with `--pg-sync`, a commit no standby confirmed is still
committed on the primary): the rejoin throws them away.

Under Redis Cluster (`redis-cluster`: 3 shards, a replica each) the
minority side is shard 1's primary and app1, the majority every other node
and app2: the other primaries vote shard 1's replica in, and after the heal
the old primary follows it. Only shard 1's keys are split; the minority's
users reach the other shards across the cut not at all.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from deploy import cluster
from deploy.cluster import PATRONI_DEMOTION_SECONDS, PATRONI_FAILOVER_SECONDS, Topology, free_base_port
from loadtest.cli import chosen, listed
from loadtest.experiments.split_brain_tables import chart, headline, table
from loadtest.harness import checkers, history, load, verdict
from loadtest.harness.nemesis import Nemesis
from loadtest.harness.observe import observe
from loadtest.harness.progress import Progress
from loadtest.harness.verdict import Check
from loadtest.reports import page

NAME = "split-brain"
HELP = "acknowledged writes a partition and its heal lose (needs network namespaces: root)"
INDEXED = True  # its report is listed in results/index.html
MINORITY_INSTANCE, MAJORITY_INSTANCE = "app1", "app2"
SIDES = {MINORITY_INSTANCE: "minority", MAJORITY_INSTANCE: "majority"}
SCENARIOS = ("redis", "redis-sync", "postgres", "postgres-sync")
# Not in the default run: PostgreSQL under Patroni, which promotes, demotes and rejoins by itself.
PATRONI_SCENARIOS = ("patroni", "patroni-sync")
# Nor sessions in etcd, a Raft store of 3 members; nor Redis Cluster, whose shards each fail over by the other
# primaries' vote.
ETCD_SCENARIOS = ("etcd",)
CLUSTER_SCENARIOS = ("redis-cluster",)
EVERY_SCENARIO = SCENARIOS + PATRONI_SCENARIOS + ETCD_SCENARIOS + CLUSTER_SCENARIOS
CLUSTER_SHARDS = 3  # as the scorecard's row redis@cluster
NEWCOMER_SLACK = 30  # seconds of newcomers beyond the partition's: the settling before it, a slow promotion
PARTITION_SECONDS = 20
# Under Patroni the majority gets its new primary only once the old one's key expired (up to
# PATRONI_FAILOVER_SECONDS): the cut lasts 10 s longer than that, so the majority writes on its new primary.
PATRONI_PARTITION_SECONDS = PATRONI_FAILOVER_SECONDS + 10


def add_arguments(parser):
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, of: {', '.join(SCENARIOS)}, or under Patroni: "
                             f"{', '.join(PATRONI_SCENARIOS)}, with sessions in etcd: {', '.join(ETCD_SCENARIOS)}, "
                             f"or on Redis Cluster: {', '.join(CLUSTER_SCENARIOS)}")
    parser.add_argument("--seconds", type=float,
                        help=f"of partition for each scenario (default: {PARTITION_SECONDS:g}; under Patroni "
                             f"{PATRONI_PARTITION_SECONDS:g}, so that a standby is promoted within it)")
    parser.add_argument("--users", type=int, default=6, help="users per side, each writing every tick")
    parser.add_argument("--out", type=Path, default=Path("results") / "split-brain")


def main(args):
    names = chosen(listed(args.scenarios), EVERY_SCENARIO)
    seconds = {name: args.seconds or scenario(name).partition_seconds for name in names}
    progress = Progress(names, max(seconds.values()) + load.SCENARIO_SETUP_SECONDS)
    with history.History(args.out / history.FILE, experiment=NAME, command=args.run.command) as recorded:
        for index, name in enumerate(names):
            progress(index, name, f"partition for {seconds[name]:g} s, {args.users} users a side")
            run(name, seconds=seconds[name], users_per_side=args.users, out=args.out, history=recorded)
    progress.done()
    results, judged = report(args.out, args.run)
    print(table(results).markdown())
    return verdict.ended(args.out, judged)


@dataclass(frozen=True)
class Scenario:
    name: str
    store: str  # "redis", "postgres" or "etcd": where sessions live
    sync: int = 0  # Redis: min-replicas-to-write
    pg_sync: str = "off"  # PostgreSQL: synchronous_standby_names, "ANY k" (under Patroni "FIRST k")
    patroni: bool = False  # PostgreSQL under Patroni (--pg-ha patroni), its etcd members on the majority side
    shards: int = 0  # Redis: a Redis Cluster of this many shards, a replica each (0: a primary under Sentinel)

    @property
    def partition_seconds(self):
        """How long its partition lasts unless asked otherwise."""
        return PATRONI_PARTITION_SECONDS if self.patroni else PARTITION_SECONDS

    @property
    def prefix(self):
        """What the names of its store's own nodes start with (not Sentinel's, nor Patroni's etcd members)."""
        return {"redis": "redis", "postgres": "pg", "etcd": "etcd"}[self.store]

    @property
    def roles(self):
        """What its store's nodes say they are once converged: (the one primary, every other node)."""
        if self.store == "etcd":
            return "leader", "follower"
        return "primary", "standby" if self.store == "postgres" and not self.patroni else "replica"

    def up_options(self):
        if self.shards:
            return {"sessions": "redis", "presence": "redis", "db": "sqlite",
                    "topology": Topology(redis="cluster", redis_shards=self.shards)}
        if self.store == "redis":
            return {"sessions": "redis", "presence": "redis", "db": "sqlite",
                    "topology": Topology(redis="sentinel", redis_replicas=2, redis_sync=self.sync)}
        if self.store == "etcd":
            return {"sessions": "etcd", "presence": "memory", "db": "sqlite", "topology": Topology(etcd_members=3)}
        return {"sessions": "db", "presence": "memory", "db": "postgres",
                "topology": Topology(pg_standbys=2, pg_sync=self.pg_sync, pg_ha="patroni" if self.patroni else "none")}

    @property
    def groups(self):
        """The store's nodes that must end with exactly one primary each: every shard (its primary `redisN`,
        its replica `redis{N + shards}`, as deploy pairs them), or None: the whole store."""
        if self.shards:
            return [[f"redis{n}", f"redis{n + self.shards}"] for n in range(1, self.shards + 1)]
        return None  # every node of the store, one group

    @property
    def reads_sides(self):
        """Whether the sides are chosen from the roles seen just before the cut: etcd's members elect their leader,
        and a Redis Cluster's shard may have failed over by itself; Sentinel and PostgreSQL start with the first
        node primary, and keep it until the cut."""
        return self.store == "etcd" or bool(self.shards)

    def candidates(self, majority):
        """The nodes on the majority side one of which is to become primary (etcd: leader): on Redis Cluster shard
        1's other node, else every node of the store there."""
        if self.shards:
            return [node for node in self.groups[0] if node in majority]
        return [node for node in majority if node.startswith(self.prefix)]

    def sides(self, roles):
        """(minority, majority): the nodes of each side of the cut, given the store's roles just before it.

        The old primary is the first node where Sentinel and deploy start it so; where the sides are read
        (reads_sides), the minority is the node `roles` shows primary: etcd's leader, shard 1's primary.
        """
        if self.reads_sides:
            nodes = self.groups[0] if self.shards else [node for node in roles if node.startswith(self.prefix)]
            leading = [node for node in nodes if roles.get(node) == self.roles[0]]
            if len(leading) != 1:
                raise RuntimeError(f"no one {self.roles[0]} to cut off among {nodes}: the store said {roles}")
            every = [node for group in self.groups for node in group] if self.shards else nodes
            return [*leading, MINORITY_INSTANCE], [*(n for n in every if n not in leading), MAJORITY_INSTANCE]
        if self.store == "redis":
            return ["redis1", "sentinel1", MINORITY_INSTANCE], ["redis2", "redis3", "sentinel2", "sentinel3",
                                                                MAJORITY_INSTANCE]
        return ["pg1", MINORITY_INSTANCE], ["pg2", "pg3", *(["etcd1", "etcd2", "etcd3"] if self.patroni else []),
                                            MAJORITY_INSTANCE]


def scenario(name):
    return {"redis": Scenario("redis", "redis"), "redis-sync": Scenario("redis --redis-sync 1", "redis", 1),
            "postgres": Scenario("postgres", "postgres"),
            "postgres-sync": Scenario("postgres --pg-sync ANY 1", "postgres", pg_sync="ANY 1"),
            "patroni": Scenario("postgres --pg-ha patroni", "postgres", patroni=True),
            "patroni-sync": Scenario("postgres --pg-ha patroni --pg-sync FIRST 1", "postgres", pg_sync="FIRST 1",
                                     patroni=True),
            "etcd": Scenario("etcd", "etcd"),
            "redis-cluster": Scenario("redis --redis cluster", "redis", shards=CLUSTER_SHARDS)}[name]


# What each scenario predicts, from the runs docs/experiments/split-brain.md reports (etcd's and Redis Cluster's from
# their designs, and only what those promise). Writes acknowledged on the
# minority side during the partition: asynchronous replication loses (nearly) all of them (404 of the 449 the
# minority acknowledged, most of them during the cut); one synchronous replica loses none, and the minority
# refuses instead. The majority side loses nothing, and a new primary appears on it.
HYPOTHESIS = [
    *(check for name in ("redis", "postgres") for check in (
        Check(name, "writes the minority acknowledged during the partition: nearly all lost (%)",
              "partition_writes.minority.lost_pct", 90, 100),
        Check(name, "the minority side refuses nothing: its old primary does not know it was replaced",
              "refused.minority", 0, 0))),
    *(check for name in ("redis-sync", "postgres-sync") for check in (
        Check(name, "acknowledged writes lost", "total.writes_lost", 0, 0),
        Check(name, "the minority side refuses writes it cannot replicate", "refused_by_kind.minority.write", 1,
              None))),
    # etcd, a Raft store: a write is acknowledged once a majority has it, so nothing acknowledged is lost, and the
    # old leader's side, without a majority, refuses (or fails) what it is asked to write.
    *(Check(name, "the cut took the primary (etcd: leader) from the majority: none of its nodes was, right after",
            "cut_off_primary", 1, 1) for name in ("etcd", "redis-cluster")),
    Check("etcd", "acknowledged writes lost", "total.writes_lost", 0, 0),
    Check("etcd", "the minority side refuses writes: it has no majority", "refused_by_kind.minority.write", 1, None),
    *(check for name in EVERY_SCENARIO for check in (
        Check(name, "the majority side's acknowledged writes lost", "sides.majority.writes_lost", 0, 0),
        Check(name, "a new primary on the majority side during the partition", "promoted", 1, 1))),
    # Under Patroni the old primary, cut off from etcd, demotes itself (within loop_wait + retry_timeout, seen
    # within a few seconds more): its side acknowledges nothing from then on (its requests are refused, or hang
    # while the instance looks for a primary across the cut); asynchronous, what it acknowledged before is lost.
    Check("patroni", "writes the minority acknowledged during the partition: nearly all lost (%)",
          "partition_writes.minority.lost_pct", 90, 100),
    Check("patroni-sync", "acknowledged writes lost", "total.writes_lost", 0, 0),
    *(check for name in PATRONI_SCENARIOS for check in (
        Check(name, "the cut-off primary is seen demoted, seconds after the cut", "demoted_after_s", 0,
              PATRONI_DEMOTION_SECONDS + 5),
        Check(name, "writes its side acknowledged after it was seen demoted", "minority_acked_after_demotion",
              0, 0))),
]


def run(name, *, seconds, users_per_side, out, history):
    """Run one scenario into the history: up, load, partition for `seconds`, heal, converge, final reads, down.

    Returns its figures, computed from the history alone (figures()).
    """
    chosen = scenario(name)
    history.scenario = name
    history.sample(condition="started", parameters={"seconds": seconds, "users": users_per_side})
    state_dir = Path(out) / "clusters" / name
    try:
        deployed = cluster.up(instances=2, port=free_base_port(), env=load.SITE_ENV, namespaces=True,
                              state_dir=state_dir, **chosen.up_options())
        urls = {node: deployed.instance_url(node) for node in SIDES}
        names = load.accounts(state_dir, urls, users=users_per_side, newcomer_seconds=seconds + NEWCOMER_SLACK)
        users = load.users(history, urls, names, users_per_side)
        newcomers, faults = [], Nemesis(history, state_dir=state_dir)
        with load.Load(history, users, urls, names, newcomers) as running:
            load.settle(seconds=2)
            # Sampled into the history where the sides are read from it: which node was primary just before the cut.
            minority, majority = chosen.sides(observe(state_dir, history) if chosen.reads_sides else {})
            cut = faults.act("partition", minority, {"from": majority})
            if cut["effect"] is None:
                raise RuntimeError(f"the partition's rules were not in place within {faults.deadline:g} s")
            if chosen.store == "postgres" and not chosen.patroni:
                # PostgreSQL has no arbiter: promote a standby as an operator who cannot see the old primary would.
                faults.act("promote", fields={"force": True})
            else:
                load.wait(history, "promoted", lambda: _roles(state_dir, history, chosen, *chosen.candidates(majority)),
                          seconds)
            load.settle(seconds=max(0.0, seconds - (history.now() - cut["effect"])))
            running.stop()
        if chosen.store == "postgres":
            for user in users:
                if user.node == MINORITY_INSTANCE:
                    user.read()  # the old primary, before the heal: writes it kept that were refused
        faults.act("heal")
        if chosen.store == "postgres" and not chosen.patroni:
            # Nothing demotes the old primary: stopped and started again, it rejoins as a standby of the new one.
            faults.act("kill", "pg1")
            faults.act("start", "pg1")
        if load.wait(history, "converged", lambda: _converged(state_dir, history, chosen), 60) is None:
            raise RuntimeError("the store did not converge to one primary within 60 s of the heal")
        load.final_reads([*users, *newcomers], through=deployed.url, presence=chosen.store == "redis")
    finally:
        cluster.down(state_dir=state_dir)
    return figures(history.events(name), name)


def _roles(state_dir, history, chosen, *nodes):
    """Whether one of nodes is primary (etcd: leader) now."""
    found = observe(state_dir, history)
    return any(found.get(node) == chosen.roles[0] for node in nodes)


def _converged(state_dir, history, chosen):
    return converged(chosen, observe(state_dir, history))


def converged(chosen, roles):
    """Every node of the store up and exactly one primary (etcd: one leader, the others following; a Redis Cluster:
    in each shard), given the roles observe() found."""
    primary, followers = chosen.roles
    found = {node: role for node, role in roles.items() if node.startswith(chosen.prefix)}
    groups = [[found.get(node) for node in group] for group in chosen.groups or [list(found)]]
    return all(seen.count(primary) == 1 and seen.count(followers) == len(seen) - 1 for seen in groups)


# Figures, from the history alone


def figures(events, name):
    """Every figure of one scenario, from its events: per side, the totals, refusals, marks, the timeline."""
    chosen = scenario(name)
    origin = checkers.condition(events, "started")
    parameters = checkers.parameters(events)
    (cut,) = checkers.faults(events, "partition")
    start, end = cut["effect"], cut["ended"]
    home = {who: SIDES.get(node, node) for who, node in checkers.homes(events).items()}
    lost = {op["id"] for op in checkers.lost_writes(events)}
    unconfirmed = {op["id"] for op in checkers.unconfirmed_writes(events)}
    promotion = checkers.faults(events, "promote")
    promoted = promotion[0]["effect"] if promotion else checkers.condition(events, "promoted")
    marks = {"partition": start, "promoted": promoted, "heal": end,
             "converged": checkers.condition(events, "converged")}
    sides, partition_writes, refused_by_kind = {}, {}, {}
    for side in SIDES.values():
        mine = [e for e in events if e["type"] != "op" or e["what"] == "presence-read" or home.get(e["who"]) == side]
        sides[side] = _side(mine, lost, unconfirmed, presence=chosen.store == "redis")
        during = checkers.window(mine, start, end, lost)
        partition_writes[side] = {**during, "lost_pct": _pct(during["lost"], during["acknowledged"])}
        refused_by_kind[side] = checkers.refusals(mine, start, end)
    total = {key: sum(sides[side][key] for side in sides) for key in sides["minority"]}
    demoted = _demoted(events, "pg1", start, end) if chosen.patroni else None
    timeline = checkers.timeline(events, {f"{SIDES[node]} {label}": _series(home, SIDES[node], outcome)
                                          for node in SIDES for label, outcome in (("acked", "ok"),
                                                                                   ("refused", "failed"))},
                                 start=origin, end=marks["converged"])
    return {"scenario": chosen.name, "store": chosen.store, "sync": chosen.sync, "pg_sync": chosen.pg_sync,
            "seconds": parameters["seconds"], "users_per_side": parameters["users"],
            "marks": {k: None if t is None else round(t - origin, 2) for k, t in marks.items()},
            "promoted": promoted is not None and start <= promoted <= end,
            "convergence_s": None if marks["converged"] is None else round(marks["converged"] - end, 2),
            "ahead_on_old_primary": checkers.reads_ahead(events) if chosen.store == "postgres" else None,
            "sides": sides, "total": total, "writes_lost_pct": _pct(total["writes_lost"], total["writes_acknowledged"]),
            "partition_writes": partition_writes, "unknown": checkers.unknown(events),
            "refused": {side: sum(kinds.values()) for side, kinds in refused_by_kind.items()},
            "refused_by_kind": refused_by_kind, "timeline": timeline,
            # Under Patroni: when the cut-off primary was first seen not primary, and what its side acknowledged after.
            "demoted_after_s": None if demoted is None else round(demoted - start, 2),
            "minority_acked_after_demotion": None if demoted is None else sum(
                1 for op in checkers.ops(events, "write", "ok")
                if home.get(op["who"]) == "minority" and demoted < op["completed"] <= end),
            # Where the sides were read from the roles: whether the cut took the primary from the majority.
            **({"cut_off_primary": _cut_off_primary(events, cut, chosen)} if chosen.reads_sides else {})}


def _cut_off_primary(events, cut, chosen):
    """Whether the cut took the store's primary (etcd: leader) away from the majority: the first role sample once
    the cut was in place shows none of the majority's candidates primary, so the one it gets comes during the
    partition (not from a failover before it)."""
    after = [e["roles"] for e in events if e["type"] == "sample" and "roles" in e and e["at"] >= cut["effect"]]
    return bool(after) and not any(after[0].get(node) == chosen.roles[0]
                                   for node in chosen.candidates(cut["target"]["from"]))


def _demoted(events, node, start, end):
    """When a role sample in [start, end] first showed `node`, seen primary in the cut before, neither primary
    nor unknown ("down": its Patroni did not answer, and PostgreSQL may still run as primary), or None."""
    primary = False
    for event in events:
        if event["type"] == "sample" and "roles" in event and start <= event["at"] <= end:
            role = event["roles"].get(node)
            if role == "primary":
                primary = True
            elif primary and role not in (None, "down"):
                return event["at"]
    return None


def _side(events, lost, unconfirmed, *, presence):
    acked = checkers.ops(events, "write", "ok")
    logins = {op["who"] for op in checkers.ops(events, "login", "ok")}
    beats = {op["who"] for op in checkers.ops(events, "heartbeat", "ok")}
    return {"writes_acknowledged": len(acked), "writes_lost": sum(op["id"] in lost for op in acked),
            "writes_unconfirmed": sum(op["id"] in unconfirmed for op in acked),
            "logins_acknowledged": len(logins), "logins_lost": len(checkers.sessions_lost(events)),
            "logins_unconfirmed": len(checkers.sessions_unconfirmed(events)),
            "heartbeats_acknowledged": len(beats) if presence else 0,
            "presence_lost": len(checkers.presence_lost(events)) if presence else 0}


def _series(home, side, outcome):
    if outcome == "ok":
        return lambda op: op["what"] == "write" and op["outcome"] == "ok" and home.get(op["who"]) == side
    return lambda op: op["outcome"] == "failed" and home.get(op["who"]) == side


def _pct(part, whole):
    return round(100 * part / whole, 1) if whole else 0.0


def results_of(out):
    """{scenario: its figures}, in the order they ran, from out/history.jsonl alone; nothing is written.

    report() (so `python -m loadtest recheck`) and the scorecard both read a run through this function, so they
    cannot disagree on a figure.
    """
    _, events = history.load(Path(out) / history.FILE)
    return {name: figures(mine, name) for name, mine in history.scenarios(events).items()}


def report(out, run, *, finished=None):
    """From out/history.jsonl alone: each scenario's figures and chart, the verdict, split-brain.json and the page.

    Returns (results, verdict). The run and `python -m loadtest recheck` both
    call it, so a recheck of a finished run reproduces its figures exactly.
    """
    out = Path(out)
    by_name = results_of(out)
    results = list(by_name.values())
    judged = verdict.judge(HYPOTHESIS, by_name)
    (out / "split-brain.json").write_text(json.dumps({"command": run.command, "results": results,
                                                      "verdict": judged}, indent=1))
    charts = {}
    for result in results:
        path = out / f"split-brain-{result['scenario'].replace(' ', '').replace('--', '-')}.svg"
        path.write_text(chart(result))
        charts[path.name] = path.read_text()
    page.write(out, run, title="Split brain, counted", headline=headline(results), verdict=judged,
               finished=finished, sections=[
                   ("", page.paragraphs(
                       f"The old primary (etcd: its leader; Redis Cluster: shard 1's) and app1 on the minority side, "
                       f"the rest on the majority side; users pinned "
                       f"to one side write to their sessions every {load.TICK:g} s, heartbeat every "
                       f"{load.TICK * load.HEARTBEAT_EVERY:g} s, and a new user logs in on each side every "
                       f"{load.TICK * load.LOGIN_EVERY:g} s. Jepsen's Redis test (2013, five nodes under "
                       "Sentinel) lost 56 % of acknowledged writes this way. Every figure is computed from "
                       f"history.jsonl (recheck: python -m loadtest recheck {out}).")),
                   ("", table(results).html()),
                   ("Timelines", page.charts(charts.values())),
               ])
    return results, judged
