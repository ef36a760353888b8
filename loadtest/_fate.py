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
from loadtest import _fate_lease as lease
from loadtest import _page as page
from loadtest._svg import marks_chart, series_chart
from loadtest.harness import checkers, history, load, verdict
from loadtest.harness.nemesis import Nemesis
from loadtest.harness.observe import observe
from loadtest.harness.verdict import Check

SENTINELS = ["sentinel1", "sentinel2", "sentinel3"]
REPLICAS = ["redis2", "redis3"]
INSTANCES = ["app1", "app2"]
TIMEOUT = 60  # seconds any one wait may take
SCENARIOS = ("primary-forever", "primary-connection", "primary-500ms", "war", "lease", "lease-late-write")
CACHES = {"primary-forever": "forever", "primary-connection": "connection", "primary-500ms": "500"}

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


@dataclass(frozen=True)
class Scenario:
    name: str
    primary_cache: str = "500"

    def up(self, state_dir, env=()):
        return cluster.up(instances=2, port=free_base_port(), sessions="redis", presence="redis", db="sqlite",
                          topology=Topology(redis="sentinel", redis_replicas=2), namespaces=True,
                          env={**load.SITE_ENV, "REDIS_PRIMARY_CACHE": self.primary_cache, **dict(env)},
                          state_dir=state_dir)


def plan(names):
    """The scenarios, checked: ValueError for an unknown name."""
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise ValueError(f"no scenario {', '.join(unknown)}; choose from: {', '.join(SCENARIOS)}")
    return names


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
        answer = user.call("POST", "/api/session-counter", counter=0)
        told = f"{answer.status_code} {answer.text[:200]}"
    except OSError as failure:
        told = str(failure)
    history.sample(answer_without_majority=told)


# Figures, from the history alone


def figures(events, name):
    """One scenario's figures from its events alone."""
    if name in ("lease", "lease-late-write"):
        return lease.figures(events, name)
    origin = checkers.condition(events, "started")
    parameters = checkers.parameters(events)
    after_heal = checkers.condition(events, "after heal")
    # The losses: what the final read came after (the load after the heal is counted apart, below).
    counted = [e for e in events if after_heal is None or e["type"] != "op" or e["invoked"] < after_heal]
    lost = {op["id"] for op in checkers.lost_writes(counted)}
    acked = checkers.ops(counted, "write", "ok")
    total = {"writes_acknowledged": len(acked), "writes_lost": sum(op["id"] in lost for op in acked)}
    result = {"scenario": name, "seconds": parameters["seconds"], "users_per_instance": parameters["users"],
              "total": total, "unknown": checkers.unknown(events)}
    if name == "war":
        return {**result, **_war_figures(events, origin)}
    (cut,) = checkers.faults(events, "partition")
    promoted = checkers.condition(events, "promoted")
    marks = {"partition": cut["effect"], "promoted": promoted, "heal": cut["ended"],
             "converged": checkers.condition(events, "converged")}
    turn = promoted or cut["ended"]
    windows = {"before promotion": checkers.window(counted, cut["effect"], turn, lost),
               "after promotion": checkers.window(counted, turn, cut["ended"], lost)}
    for figures_ in windows.values():
        figures_["lost_pct"] = round(100 * figures_["lost"] / figures_["acknowledged"], 1) \
            if figures_["acknowledged"] else 0.0
    later = [e for e in events if e["type"] == "op" and e["what"] == "write" and after_heal is not None
             and e["completed"] is not None and e["completed"] >= after_heal]
    windows["after heal"] = {"acknowledged": sum(op["outcome"] == "ok" for op in later),
                             "refused": sum(op["outcome"] == "failed" for op in later)}
    last = {}
    for op in acked:
        last[op["who"]] = op
    behind = sum(op["id"] in lost for op in last.values())
    timeline = checkers.timeline(events, {
        "session writes acked": lambda op: op["what"] == "write" and op["outcome"] == "ok",
        "acked, then lost": lambda op: op["id"] in lost and op["completed"] < cut["ended"],
        "answered 503": lambda op: op["refusal"] == "503"}, start=origin)
    return {**result, "primary_cache": CACHES[name], "marks": _relative(marks, origin), "windows": windows,
            "writes_rolled_back": total["writes_lost"], "sessions_behind_after_heal": behind,
            "timeline": timeline}


def _war_figures(events, origin):
    killed = next(f for f in checkers.faults(events, "kill") if f["target"] == "redis1")
    (back,) = checkers.faults(events, "start")
    first = checkers.failover_time(events, back)
    sentinels = [f for f in checkers.faults(events, "kill") if f["target"] != "redis1"]
    marks = {"sentinels killed": sentinels[-1]["effect"], "primary killed": killed["effect"],
             "sentinel back": back["effect"], "promoted": checkers.condition(events, "promoted"),
             "first write after": None if first is None else back["effect"] + first}
    end_roles = next(e["roles"] for e in events if e.get("condition") == "no majority, at the end")
    writes = [op for op in checkers.ops(events, "write") if op["completed"] is not None
              and killed["effect"] <= op["completed"] < back["effect"]]
    answer = next((e["answer_without_majority"] for e in events if "answer_without_majority" in e), None)
    timeline = checkers.timeline(events, {
        "session writes acked": lambda op: op["what"] == "write" and op["outcome"] == "ok",
        "acked, then lost": lambda op: False,
        "answered 503": lambda op: op["refusal"] == "503"}, start=origin)
    return {"marks": _relative(marks, origin),
            "promoted_without_majority": any(end_roles.get(node) == "primary" for node in REPLICAS),
            "while_no_majority": {"acknowledged": sum(op["outcome"] == "ok" for op in writes),
                                  "refused": sum(op["outcome"] == "failed" for op in writes)},
            "answer_without_majority": answer, "timeline": timeline}


def _relative(marks, origin):
    return {name: None if t is None else round(t - origin, 2) for name, t in marks.items()}


# Output


def _cell(window):
    return f"{window['lost']} of {window['acknowledged']} ({window['refused']} refused)"


def tables(results):
    """Markdown: one table per lesson present in results."""
    parts = []
    primary = [r for r in results if r["scenario"].startswith("primary-")]
    if primary:
        rows = ["| REDIS_PRIMARY_CACHE | acked writes lost | sessions behind after the heal "
                "| partitioned, before the promotion: lost of acked "
                "| after the promotion (the wrong node): lost of acked | after the heal: writes acked, refused "
                "| promoted after | old primary a replica after the heal |", "|---|---|---|---|---|---|---|---|"]
        for r in primary:
            marks = r["marks"]
            promoted = "never" if marks["promoted"] is None else f"{marks['promoted'] - marks['partition']:.1f} s"
            converged = "never" if marks["converged"] is None else f"{marks['converged'] - marks['heal']:.1f} s"
            rows.append(f"| {r['primary_cache']} | {r['writes_rolled_back']} of {r['total']['writes_acknowledged']} "
                        f"| {r['sessions_behind_after_heal']} of {len(INSTANCES) * r['users_per_instance']} "
                        f"| {_cell(r['windows']['before promotion'])} | {_cell(r['windows']['after promotion'])} "
                        f"| {r['windows']['after heal']['acknowledged']}, {r['windows']['after heal']['refused']} "
                        f"| {promoted} | {converged} |")
        parts.append("\n".join(rows))
    for r in results:
        if r["scenario"] == "war":
            marks = r["marks"]
            no_majority = r["while_no_majority"]
            parts.append("\n".join([
                "| primary dead, no Sentinel majority | session writes acked | refused | promoted without a majority "
                "| promoted after a Sentinel came back | first acked write after it came back | acked writes lost |",
                "|---|---|---|---|---|---|---|",
                f"| {marks['sentinel back'] - marks['primary killed']:.1f} s | {no_majority['acknowledged']} "
                f"| {no_majority['refused']} | {'yes' if r['promoted_without_majority'] else 'no'} "
                f"| {_since(marks, 'promoted', 'sentinel back')} "
                f"| {_since(marks, 'first write after', 'sentinel back')} "
                f"| {r['total']['writes_lost']} of {r['total']['writes_acknowledged']} |"]))
        if r["scenario"] == "lease":
            marks = r["marks"]
            timings = r["timings"]
            parts.append("\n".join([
                "| lease TTL / renew / retry | holder stopped acting | holder gave the lease up | another instance "
                "acting | tokens old → new (database's highest) | runs with the old token after the takeover |",
                "|---|---|---|---|---|---|",
                f"| {timings['ttl']:g} / {timings['renew_every']:g} / {timings['retry']:g} s "
                f"| {_since(marks, 'holder stopped acting', 'partition')} "
                f"| {_since(marks, 'holder gave up', 'partition')} | {_since(marks, 'other took over', 'partition')} "
                f"| {r['old_token']} → {r['new_token']} ({r['highest_token_in_database']}) "
                f"| {r['runs_with_old_token_after_takeover']} |"]))
        if r["scenario"] == "lease-late-write":
            parts.append(_late_write_table(r))
    return "\n\n".join(parts)


def _late_write_table(r):
    marks, late = r["marks"], r["late_write"] or {}
    return "\n".join([
        "| holder cut, into its job's wait | another instance acting | it wrote with token | healed "
        "| late write arrived (after the heal) | late write's token | highest token when it arrived | refused "
        "| runs with the old token after the takeover |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {r['holder_at_cut']['working_for']:.2f} s | {_since(marks, 'other took over', 'cut')} "
        f"| {r['new_token']} ({_since(marks, 'other wrote', 'cut')}) | {_since(marks, 'heal', 'cut')} "
        f"| {_since(marks, 'late write refused', 'cut')} ({_since(marks, 'late write refused', 'heal')}) "
        f"| {late.get('token', 'none')} | {late.get('highest_when_it_arrived', '-')} "
        f"| {'yes' if r['refused'] else 'NO'} | {r['runs_with_old_token_after_takeover']} |"])


def _since(marks, name, origin):
    return "never" if marks.get(name) is None else f"{marks[name] - marks[origin]:.1f} s"


def headline(results):
    """One figure per scenario: writes lost to the old primary, writes refused without a majority, the takeover."""
    parts = []
    for r in results:
        if r["scenario"].startswith("primary-"):
            after = r["windows"]["after promotion"]
            parts.append(f"{r['scenario']}: {after['lost']} of {after['acknowledged']} writes acknowledged after "
                         "the promotion lost")
        elif r["scenario"] == "war":
            parts.append(f"war: {r['while_no_majority']['acknowledged']} session writes acknowledged, "
                         f"{r['while_no_majority']['refused']} refused without a Sentinel majority")
        elif r["scenario"] == "lease":
            parts.append(f"lease: another instance acting {_since(r['marks'], 'other took over', 'partition')} "
                         f"after the partition, {r['runs_with_old_token_after_takeover']} runs with the old token "
                         "after it")
        elif r["scenario"] == "lease-late-write":
            late = r["late_write"] or {}
            parts.append(f"lease-late-write: the old holder's write (token {late.get('token', 'none')}) arrived "
                         f"{_since(r['marks'], 'late write refused', 'heal')} after the heal and was "
                         f"{'refused' if r['refused'] else 'NOT refused'}")
    return "; ".join(parts)


def chart(result):
    """The scenario's timeline: per-second series with its marks, or (the lease) the marks alone."""
    marks = result["marks"]
    if "timeline" not in result:
        return marks_chart(f"{result['scenario']}: when each step happened (s after the partition)", marks)
    series = result["timeline"]
    return series_chart(f"{result['scenario']}: session writes per second", list(range(len(series["answered 503"]))),
                        series, x_label="seconds since the start", width=640, legend_columns=3,
                        markers=[(t, name) for name, t in marks.items() if t is not None])


def report(out, run, *, finished=None):
    """From out/history.jsonl alone: each scenario's figures and chart, the verdict, fate.json, report.md, the page.

    Returns (tables, verdict); the run and `python -m loadtest recheck` both call it.
    """
    out = Path(out)
    _, events = history.load(out / history.FILE)
    names = list(dict.fromkeys(e["scenario"] for e in events if e.get("scenario")))
    results = [figures(history.of(events, name), name) for name in names]
    judged = verdict.judge(HYPOTHESIS, dict(zip(names, results)))
    (out / "fate.json").write_text(json.dumps({"command": run.command, "results": results, "verdict": judged},
                                              indent=1))
    text = tables(results)
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
                   ("", page.markdown(text)),
                   ("Timelines", page.paragraphs(
                       "Per second: session writes acknowledged, those of them lost after the heal (they went to "
                       "a node whose copy did not survive), and answers 503; dashed lines mark the partition, "
                       "the promotion, the heal.") + page.charts(svgs)),
               ])
    return text, judged
