"""Fate sharing: what an instance does when a fact it relies on (who is primary, who holds the lease) is wrong.

Three lessons, each on a cluster whose Redis nodes, Sentinels and instances
live in network namespaces of their own (`deploy up --netns`), with the
users, load and final reads of the split-brain count (loadtest/harness/load.py).
Every operation, fault and observation goes into the run's history
(loadtest/harness/history.py); every figure is computed from it (report()):

- `primary-forever`, `primary-connection`, `primary-500ms`: the Redis
  primary is cut off from the Sentinels and the replicas, not from the
  instances. Sentinel promotes a replica; an instance that still trusts
  its old answer (REDIS_PRIMARY_CACHE) goes on writing to the old primary,
  and the heal throws those writes away. Counted: session writes
  acknowledged after the promotion and lost ("to the wrong node").
- `war`: two of the three Sentinels gone, then the primary killed. No
  majority, no failover: how long the site answers 503, and how soon it
  recovers once a Sentinel comes back.
- `lease`: the maintenance lease's holder cut off from Redis. When it stops
  acting, when another instance holds the lease, and whether anything with
  its token reached the database after the takeover.
- `lease-late-write`: the holder cut off from everything (Redis and the
  PostgreSQL database) while a job is between deciding and writing, so its
  fenced write is sent into the cut. TCP retransmits it after the heal, by
  when the other instance holds the lease with the next token: the write
  arrives late, and the fence must refuse it.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from deploy import cluster
from deploy.cluster import Topology, free_base_port
from loadtest.cli import chosen, listed
from loadtest.experiments import fate_lease as lease
from loadtest.experiments.fate_figures import CACHES, INSTANCES, REPLICAS, chart, figures, headline, tables
from loadtest.harness import checkers, history, load, verdict
from loadtest.harness.nemesis import Nemesis
from loadtest.harness.observe import observe
from loadtest.harness.progress import Progress
from loadtest.harness.site import COUNTER
from loadtest.harness.verdict import Check
from loadtest.reports import page
from loadtest.reports import tables as rendered

NAME = "fate"
HELP = "fate sharing: a stale primary, no Sentinel majority, the lease holder cut off (needs network namespaces: root)"
INDEXED = True  # its report is listed in results/index.html
SENTINELS = ["sentinel1", "sentinel2", "sentinel3"]
TIMEOUT = 60  # seconds any one wait may take
SCENARIOS = ("primary-forever", "primary-connection", "primary-500ms", "war", "lease", "lease-late-write")

# What each scenario predicts, from the runs docs/experiments/fate.md reports (one busy, one quiet).
HYPOTHESIS = [
    Check("primary-forever", "writes acknowledged after the promotion (to the wrong node): nearly all lost (%)",
          "windows.after promotion.lost_pct", 90, 100),
    Check("primary-forever", "writes acknowledged after the heal (the old primary is read-only): none",
          "windows.after heal.acknowledged", 0, 0),
    Check("primary-connection", "pooled connections stay on the old primary: 30-100 % of the writes acknowledged "
          "after the promotion lost (measured 53 % busy, 100 % quiet)", "windows.after promotion.lost_pct", 30, 100),
    Check("primary-500ms", "writes acknowledged after the promotion lost", "windows.after promotion.lost", 0, 0),
    # The promotion is seen by polling every node's role (up to a second late on a busy machine): writes the new
    # primary acknowledged before the poll saw it fall into this window and survive (78 % lost in one run).
    Check("primary-500ms", "asynchronous replication's own loss: most writes between the cut and the promotion "
          "lost (%)", "windows.before promotion.lost_pct", 50, 100),
    Check("war", "a replica promoted without a Sentinel majority", "promoted_without_majority", 0, 0),
    Check("war", "writes acknowledged without a Sentinel majority", "while_no_majority.acknowledged", 0, 0),
    Check("war", "acknowledged writes lost", "total.writes_lost", 0, 0),
    *lease.HYPOTHESIS,
]


def add_arguments(parser):
    parser.add_argument("--scenarios", default=",".join(SCENARIOS),
                        help=f"comma-separated, of: {', '.join(SCENARIOS)}")
    parser.add_argument("--seconds", type=float, default=12, help="of partition, or of no Sentinel majority")
    parser.add_argument("--users", type=int, default=4, help="users per instance, each writing every tick")
    parser.add_argument("--out", type=Path, default=Path("results") / "fate")


def main(args):
    names = chosen(listed(args.scenarios), SCENARIOS)
    progress = Progress(names, args.seconds + load.SCENARIO_SETUP_SECONDS)
    with history.History(args.out / history.FILE, experiment=NAME, command=args.run.command) as recorded:
        for index, name in enumerate(names):
            progress(index, name, f"{args.seconds:g} s, {args.users} users an instance")
            run(name, seconds=args.seconds, users_per_instance=args.users, out=args.out, history=recorded)
    progress.done()
    text, judged = report(args.out, args.run)
    print(text)
    return verdict.ended(args.out, judged)


@dataclass(frozen=True)
class Scenario:
    name: str
    primary_cache: str = "500"

    def up(self, state_dir, env=()):
        return cluster.up(instances=2, port=free_base_port(), sessions="redis", presence="redis", db="sqlite",
                          topology=Topology(redis="sentinel", redis_replicas=2), namespaces=True,
                          env={**load.SITE_ENV, "REDIS_PRIMARY_CACHE": self.primary_cache, **dict(env)},
                          state_dir=state_dir)


def run(name, *, seconds, users_per_instance, out, history):
    """Run one scenario on a cluster of its own into the history; return its figures (figures())."""
    state_dir = Path(out) / "clusters" / name
    history.scenario = name
    history.sample(condition="started", parameters={"seconds": seconds, "users": users_per_instance})
    try:
        if name == "war":
            _war(state_dir, history, seconds=seconds, users_per_instance=users_per_instance)
        elif name == "lease":
            lease.lease(Scenario("lease").up(state_dir, env=lease.LEASE_ENV), state_dir, history)
        elif name == "lease-late-write":
            lease.late_write(state_dir, history)
        else:
            _stale_primary(Scenario(name, CACHES[name]), state_dir, history, seconds=seconds,
                           users_per_instance=users_per_instance)
    finally:
        cluster.down(state_dir=state_dir)
    return figures(history.events(name), name)


# A cached fact outliving its owner


def _stale_primary(chosen, state_dir, history, *, seconds, users_per_instance):
    deployed = chosen.up(state_dir)
    urls = {node: deployed.instance_url(node) for node in INSTANCES}
    names = load.accounts(state_dir, urls, users=users_per_instance, newcomer_seconds=seconds + 2 * TIMEOUT)
    users = load.users(history, urls, names, users_per_instance)
    newcomers, faults = [], Nemesis(history, state_dir=state_dir)
    with load.Load(history, users, urls, names, newcomers, loop=load.checking) as running:
        load.settle(seconds=2)
        cut = faults.act("partition", ["redis1"], {"from": [*SENTINELS, *REPLICAS]})
        if cut["effect"] is None:
            raise RuntimeError(f"the partition's rules were not in place within {faults.deadline:g} s")
        load.wait(history, "promoted", lambda: _promoted(state_dir, history), seconds)
        load.settle(seconds=max(0.0, seconds - (history.now() - cut["effect"])))
        running.stop()
    faults.act("heal")
    load.wait(history, "converged", lambda: observe(state_dir, history).get("redis1") == "replica", TIMEOUT)
    # Read back before anyone writes again: a later write would raise the counter over a lost one.
    load.final_reads([*users, *newcomers], through=deployed.url, presence=False)
    # Then what the instances do once the old primary is a replica of the new one.
    history.sample(condition="after heal")
    with load.Load(history, users, urls, names, []) as running:
        load.settle(seconds=seconds / 2)
        running.stop()


def _promoted(state_dir, history):
    return any(observe(state_dir, history).get(node) == "primary" for node in REPLICAS)


# The war case: no majority of Sentinels


def _war(state_dir, history, *, seconds, users_per_instance):
    deployed = Scenario("war").up(state_dir)
    urls = {node: deployed.instance_url(node) for node in INSTANCES}
    names = load.accounts(state_dir, urls, users=users_per_instance, newcomer_seconds=seconds + 3 * TIMEOUT)
    users = load.users(history, urls, names, users_per_instance)
    newcomers, faults = [], Nemesis(history, state_dir=state_dir)
    with load.Load(history, users, urls, names, newcomers) as running:
        load.settle(seconds=2)
        for sentinel in SENTINELS[:2]:
            faults.act("kill", sentinel)
        load.settle(seconds=2)
        faults.act("kill", "redis1")
        load.settle(seconds=seconds / 2)
        _probe(users[0], history)
        load.settle(seconds=seconds / 2)
        observe(state_dir, history, condition="no majority, at the end")
        back = faults.act("start", "sentinel2")
        load.wait(history, "promoted", lambda: _promoted(state_dir, history), TIMEOUT)
        load.wait(history, "first write after",
                  lambda: checkers.failover_time(history.events("war"), back) is not None, TIMEOUT)
        load.settle(seconds=2)
        running.stop()
    load.final_reads([*users, *newcomers], through=deployed.url, presence=False)


def _probe(user, history):
    """What a user is told now on a session write, status and body, as a sample."""
    try:
        answer = user.site.api("POST", COUNTER, counter=0)
        told = f"{answer.status_code} {answer.text[:200]}"
    except OSError as failure:
        told = str(failure)
    history.sample(answer_without_majority=told)


def report(out, run, *, finished=None):
    """From out/history.jsonl alone: each scenario's figures and chart, the verdict, fate.json, report.md, the page.

    Returns (tables, verdict); the run and `python -m loadtest recheck` both call it.
    """
    out = Path(out)
    _, events = history.load(out / history.FILE)
    by_scenario = {name: figures(mine, name) for name, mine in history.scenarios(events).items()}
    results = list(by_scenario.values())
    judged = verdict.judge(HYPOTHESIS, by_scenario)
    (out / "fate.json").write_text(json.dumps({"command": run.command, "results": results, "verdict": judged},
                                              indent=1))
    shown = tables(results)
    text = rendered.markdown(shown)
    (out / "report.md").write_text(f"# Fate sharing\n\nCommand: `{run.command}`\n\n{text}\n")
    svgs = []
    for result in results:
        svgs.append(chart(result))
        (out / f"fate-{result['scenario']}.svg").write_text(svgs[-1])
    page.write(out, run, title="Fate sharing: a cached primary, no Sentinel majority, the lease cut off",
               headline=headline(results), verdict=judged, finished=finished, sections=[
                   ("", page.paragraphs(
                       "primary-*: the Redis primary cut off from the Sentinels and the replicas, not from the "
                       "instances; REDIS_PRIMARY_CACHE decides whether an instance goes on writing to it after the "
                       "promotion. war: two of three Sentinels gone, then the primary killed. lease: the maintenance "
                       "lease's holder cut off from Redis. lease-late-write: the holder cut off from "
                       "everything while its fenced write is on its way; the write arrives after the heal. Every "
                       f"figure is computed from history.jsonl (python -m loadtest recheck {out}).")),
                   ("", rendered.html(shown)),
                   ("Timelines", page.paragraphs(
                       "Per second: session writes acknowledged, those of them lost after the heal (they went to "
                       "a node whose copy did not survive), and answers 503; dashed lines mark the partition, "
                       "the promotion, the heal.") + page.charts(svgs)),
               ])
    return text, judged
