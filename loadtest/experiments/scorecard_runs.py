"""The runs the scorecard reads: for each kind, which rows it can measure, its command, and its figures.

Each kind of run keeps its folders under the scorecard's folder as
`<kind>/round<k>/`, each the `--out` of one command. A run's figures are
read from what that command saved, by the code that made them: the kill
experiment's results.json (its `summarise`d figures), the capacity
command's capacity.json (each configuration's steps and the rate it held),
`bench`'s bench.json (its per-round ratios to the first store, memory), and
split-brain's history.jsonl through `split_brain.results_of`, the function
`python -m loadtest recheck` reports through. A row a kind cannot measure
says why: `Skip("not applicable", ...)` when the property does not exist
for it, `Skip("not measured", ...)` when no command here measures it yet.
"""

import json
import re
from dataclasses import dataclass
from pathlib import Path

from loadtest.experiments import capacity, kill_run, split_brain
from loadtest.harness import history, load
from loadtest.reports import page


@dataclass(frozen=True)
class Skip:
    status: str  # "not applicable" or "not measured"
    why: str


@dataclass(frozen=True)
class Kind:
    """One kind of run: its folder's name, what it measures, and how to run and read it."""

    name: str
    measures: str
    applies: object  # row -> None, or a Skip
    argv: object  # (rows, out folder) -> the arguments of `python -m loadtest`
    seconds: object  # rows -> (about how long one run of them takes, how much longer its capacity steps may add)
    read: object  # run folder -> {row name: figures}
    key: object = None  # row -> the name its figures have in the run (default: the row's name)
    rounds: int = 0  # 0: as many as asked; else this many (a run that alternates its own rounds)
    saved: str = "results.json"  # the file a finished run leaves in its folder

    def name_of(self, row):
        """The name the row's figures have in this kind's runs."""
        return (self.key or (lambda r: r.name))(row)

    def figures_of(self, folder, row):
        """The row's figures in the run at `folder`, or None if the run did not measure it."""
        return self.read(folder).get(self.name_of(row))


def _store_fault(row):
    """Whether the store faults of `python -m loadtest run --faults store-...` can aim at the row's sessions (they
    reach every server a session store here lives on: kill_run.store_of)."""
    server = row.session_server
    if row.config.sessions == "signed_cookies":
        return Skip("not applicable", "no store to kill: the session rides in the cookie")
    if not row.store.survives_instance_death:
        return Skip("not applicable", "no store: the sessions live in the instance (see an instance dying)")
    if not server:
        return Skip("not applicable", "no server to kill: the sessions are files or SQLite on the instances' disk")
    return None


def _partitioned(row):
    """Whether split-brain has a scenario of the row's topology (a partition needs replicas to split from)."""
    skipped = _store_fault(row)
    if skipped and skipped.status == "not applicable":
        return skipped
    if not row.replicated:
        return Skip("not applicable", "one node, nothing to split: cut off, it is down (the primary-dies cells)")
    if _scenario(row) is None:
        return Skip("not measured", "split-brain has no scenario of this topology")
    return None


def _scenario(row):
    """The split-brain scenario whose store, replication and failover manager are the row's, or None."""
    topology = row.config.topology
    for name in split_brain.EVERY_SCENARIO:
        chosen = split_brain.scenario(name)
        if chosen.store != row.session_server:
            continue
        if chosen.store == "redis" and topology.redis == "sentinel" and not chosen.shards \
                and chosen.sync == topology.redis_sync:
            return name
        if chosen.store == "redis" and topology.redis == "cluster" and chosen.shards == topology.redis_shards \
                and chosen.sync == topology.redis_sync:
            return name
        if chosen.store == "postgres" and chosen.pg_sync == topology.pg_sync \
                and chosen.patroni == (topology.pg_ha == "patroni"):
            return name
        if chosen.store == "etcd" and chosen.up_options()["topology"].etcd_members == topology.etcd_members:
            return name
    return None


def _bench_row(row):
    """The row's name in bench, and in its bench.json: its store, and its topology after '@' if it has one
    (`redis@sentinel`). bench chooses no load balancing: it measures the poll mix straight to the instance."""
    topology = row.name.partition("@")[2]
    return f"{row.config.sessions}@{topology}" if topology else row.config.sessions


def _results(folder):
    """The kill experiment's figures per configuration, as its results.json keeps them."""
    return {r["config"]["name"]: r for r in json.loads((Path(folder) / "results.json").read_text())["configs"]}


def _capacity(folder):
    """Each configuration's capacity record, as the capacity command's capacity.json keeps it; a run judged by
    other bounds than the scorecard's is refused (its figures would mean something else)."""
    records = json.loads((Path(folder) / "capacity.json").read_text())
    for record in records:
        bounds = record["bounds"]
        if (bounds["p99_ms"], bounds["failed_pct"]) != (CAPACITY_STEPS.p99_ms, CAPACITY_STEPS.failed_pct):
            raise ValueError(f"{folder}/capacity.json: {record['config']} was judged by p99 {bounds['p99_ms']} ms "
                             f"and {bounds['failed_pct']} % failed, not the scorecard's {CAPACITY_STEPS.p99_ms} ms "
                             f"and {CAPACITY_STEPS.failed_pct} %")
    return {record["config"]: record for record in records}


def _bench(folder):
    """Each store's server CPU a request over the first store's, round by round, as bench.json keeps it
    (`cpu_to_base`, by loadtest/bench/cost.py); the first store must be memory."""
    stores = json.loads((Path(folder) / "bench.json").read_text())["stores"]
    base = next(name for name in stores if name != "ceiling")
    if base != "memory":
        raise ValueError(f"{folder}/bench.json: its ratios are over {base}'s CPU, not memory's (run memory first)")
    return {name: {"cpu_to_memory": row["poll_direct"]["cpu_to_base"]}
            for name, row in stores.items() if "cpu_to_base" in row.get("poll_direct", {})}


def _kill_seconds(rows, users, duration=90):
    """(The kill experiment's own estimate (kill_run.Plan) for the rows at a fixed number of users, 0.)"""
    return len(rows) * kill_run.Plan([], users, duration, 10, "kill", 3, 0, Path(".")).seconds_per_config(), 0


def _capacity_seconds(rows):
    """(About 30 s to start each row's cluster, and the most its capacity steps may add: every step up to the
    most users.)"""
    steps = CAPACITY_STEPS
    return 30 * len(rows), len(rows) * steps.count() * (steps.ramp + steps.hold)


def _bench_seconds(rows):
    """bench's own schedule: 3 rounds of the ceiling and each store, 5 s per mix (4 at most), plus ~30 s a start
    for a store alone and ~60 s under a topology (Patroni's take 30 to 60 s)."""
    return 3 * (len(rows) + 1) * 4 * 5 + sum(60 if "@" in _bench_row(row) else 30 for row in rows), 0


def _run(rows, out, *more):
    return ["run", "--configs", ",".join(r.name for r in rows), *more, "--out", str(out)]


# Every fault runs at a fixed number of users, as docs/experiments/store-faults.md, with no capacity step before it:
# on this machine memory+sticky still held its steps past 700 users after 12 minutes (up to about 13 minutes of
# steps a row), so a round of 15 rows would take hours. The capacity is a kind of its own.
FAULT_USERS = 30
STORE_FAULT_LOAD = ["--users", str(FAULT_USERS), "--duration", "60", "--warmup", "10"]
# The capacity command's own steps (+10 %, 25 s each, from 50 users: at most 32 steps, 800 s a row) would take up
# to 3.3 hours a round of the 15 rows here; these take at most a fifth of that (11 steps of 13 s, 36 minutes), each
# step 25 % over the last, so two rounds may hold one step apart, which the cell's range shows. The first step must
# hold: in steps of +25 % from 50 users, etcd held 152 and Patroni with a synchronous standby 190, on a busy machine.
CAPACITY_STEPS = capacity.Steps(start_users=100, step=0.25, ramp=3, hold=10)

KINDS = {kind.name: kind for kind in (
    Kind("bench", "server CPU a request (the poll mix, straight to one instance), over memory's, per round",
         lambda row: None,
         lambda rows, out: ["bench", "--stores", ",".join(dict.fromkeys(_bench_row(r) for r in rows)),
                            "--out", str(out)],
         _bench_seconds, _bench, key=_bench_row, rounds=1, saved="bench.json"),
    Kind("capacity", f"the highest request rate 3 instances held, users stepped up {CAPACITY_STEPS.describe()}",
         lambda row: None, lambda rows, out: ["capacity", "--configs", ",".join(r.name for r in rows),
                                              *capacity.step_options(CAPACITY_STEPS), "--out", str(out)],
         _capacity_seconds, _capacity, saved="capacity.json"),
    Kind("instance-kill", f"app1 killed at 30 s and started at 60 s of 90, under {FAULT_USERS} users, "
         "each session written every tick",
         lambda row: None,
         lambda rows, out: _run(rows, out, "--session-writes", "--users", str(FAULT_USERS)),
         lambda rows: _kill_seconds(rows, FAULT_USERS), _results),
    Kind("store-kill", "the sessions' store's primary (or only node; etcd: its leader; Redis Cluster: one shard's "
         "primary) killed at 20 s (PostgreSQL without Patroni: a standby promoted at once), started again at 40 s; "
         f"{FAULT_USERS} users",
         _store_fault, lambda rows, out: _run(rows, out, "--faults", "store-kill", *STORE_FAULT_LOAD),
         lambda rows: _kill_seconds(rows, FAULT_USERS, 60), _results),
    Kind("store-restart", "the sessions' store's primary killed and started again at once at 20 s; "
         f"{FAULT_USERS} users",
         _store_fault, lambda rows, out: _run(rows, out, "--faults", "store-restart", *STORE_FAULT_LOAD),
         lambda rows: _kill_seconds(rows, FAULT_USERS, 60), _results),
    Kind("split-brain", "the old primary (etcd: its leader) and app1 cut off from the rest for 20 s (under Patroni "
         "32 s: its lease must lapse before a standby takes over), users writing on both sides",
         _partitioned, lambda rows, out: ["split-brain", "--scenarios", ",".join(_scenario(r) for r in rows),
                                          "--out", str(out)],
         lambda rows: (sum(split_brain.scenario(_scenario(r)).partition_seconds + load.SCENARIO_SETUP_SECONDS
                           for r in rows), 0), split_brain.results_of, key=_scenario,
         saved=history.FILE),
)}
ROUND = "round"


def runs(root, kind):
    """The kind's run folders under root, in round order (a folder without its saved figures is no run)."""
    folder = Path(root) / kind.name
    found = [f for f in folder.glob(f"{ROUND}*") if re.fullmatch(rf"{ROUND}\d+", f.name) and (f / kind.saved).is_file()]
    return sorted(found, key=lambda f: int(f.name[len(ROUND):]))


def links(folder, name):
    """The files a cell links to in a run folder, those that exist: its page, its history (the kill experiment's:
    the configuration `name`'s own), its figures."""
    folder = Path(folder)
    named = [("page", page.REPORT_FILE), ("history", history.FILE), ("history", f"raw/{name}.{history.FILE}"),
             ("figures", "results.json"), ("figures", "bench.json"), ("figures", "capacity.json")]
    return [(label, folder / file) for label, file in named if (folder / file).is_file()]


def plan(rows, root, rounds):
    """[(kind, round, rows in this round's order, argv)]: every run the scorecard needs, rounds alternating."""
    steps = []
    for number in range(1, rounds + 1):
        for kind in KINDS.values():
            if kind.rounds and number > kind.rounds:
                continue
            mine = [row for row in rows if kind.applies(row) is None]
            mine = mine if number % 2 else mine[::-1]
            if kind.name == "bench":  # memory alone first: the base of its ratios
                mine = sorted(mine, key=lambda row: _bench_row(row) != "memory")
            steps.append((kind, number, mine, kind.argv(mine, Path(root) / kind.name / f"{ROUND}{number}")))
    return steps


def estimate(steps):
    """(Seconds the plan takes by the commands' own estimates, and at most how many more the capacity steps add.)"""
    spans = [kind.seconds(mine) for kind, _, mine, _ in steps]
    return sum(fixed for fixed, _ in spans), sum(more for _, more in spans)
