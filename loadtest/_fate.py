"""Fate sharing: what an instance does when a fact it relies on (who is primary, who holds the lease) is wrong.

Three lessons, each on a cluster whose Redis nodes, Sentinels and instances
live in network namespaces of their own (`deploy up --netns`), with the
users, recorder and audit of the split-brain count (loadtest/_split_brain.py):

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
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import requests

from deploy import cluster
from deploy.cluster import Topology, free_base_port
from loadtest import _page as page
from loadtest._split_brain import (
    PASSWORD,
    ROOM,
    SITE_ENV,
    TICK,
    Recorder,
    User,
    _audit,
    _newcomer_loop,
    _roles,
    _settle,
    _status,
    _user_loop,
    accounts,
)
from loadtest._svg import marks_chart, series_chart

SENTINELS = ["sentinel1", "sentinel2", "sentinel3"]
REPLICAS = ["redis2", "redis3"]
INSTANCES = ["app1", "app2"]
SIDES = tuple(INSTANCES)  # users are pinned to an instance, and counted by it
LEASE_ENV = {"LEASE_TTL": "3", "LEASE_RETRY": "0.5", "MAINTENANCE_PERIOD": "1"}
# Each job waits MAINTENANCE_WORK_SECONDS between deciding and writing, so that the cut
# lands inside the wait; a database connection keeps unacknowledged data for
# DATABASE_TCP_USER_TIMEOUT (2 s by default) before giving up, so that the write sent into
# the cut survives it and arrives late. The scheduler renews only between jobs, so the
# new holder's catch-up (a period or two, a wait each) must fit in one LEASE_TTL, or it
# loses the lease half-way and comes back with yet another token.
LATE_WRITE_ENV = {"LEASE_TTL": "4", "LEASE_RETRY": "0.5", "MAINTENANCE_PERIOD": "5",
                  "MAINTENANCE_WORK_SECONDS": "1.5", "DATABASE_TCP_USER_TIMEOUT": "60"}
CUT_WITHIN = 0.5  # seconds into the job's wait: the cut must land before the write is sent
TIMEOUT = 60  # seconds any one wait may take
SCENARIOS = ("primary-forever", "primary-connection", "primary-500ms", "war", "lease", "lease-late-write")


@dataclass(frozen=True)
class Scenario:
    name: str
    primary_cache: str = "500"

    def up(self, state_dir, env=()):
        return cluster.up(instances=2, port=free_base_port(), sessions="redis", presence="redis", db="sqlite",
                          topology=Topology(redis="sentinel", redis_replicas=2), namespaces=True,
                          env={**SITE_ENV, "REDIS_PRIMARY_CACHE": self.primary_cache, **dict(env)},
                          state_dir=state_dir)


def plan(names):
    """The scenarios, checked: ValueError for an unknown name."""
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise ValueError(f"no scenario {', '.join(unknown)}; choose from: {', '.join(SCENARIOS)}")
    return names


def run(name, *, seconds, users_per_instance, out):
    """Run one scenario on a cluster of its own; return its result."""
    state_dir = Path(out) / "clusters" / name
    try:
        if name == "war":
            return _war(state_dir, seconds=seconds, users_per_instance=users_per_instance)
        if name == "lease":
            return _lease(state_dir)
        if name == "lease-late-write":
            return _lease_late_write(state_dir)
        cache = {"primary-forever": "forever", "primary-connection": "connection", "primary-500ms": "500"}[name]
        return _stale_primary(Scenario(name, cache), state_dir, seconds=seconds,
                              users_per_instance=users_per_instance)
    finally:
        cluster.down(state_dir=state_dir)


# A cached fact outliving its owner


def _stale_primary(chosen, state_dir, *, seconds, users_per_instance):
    deployed = chosen.up(state_dir)
    started = time.monotonic()
    recorder = Recorder(started)
    names = accounts(state_dir, INSTANCES, users=users_per_instance, newcomer_seconds=seconds + 2 * TIMEOUT)
    users, newcomers = _users(deployed, names, users_per_instance, recorder)
    marks = {}
    rolled_back = set()
    with _Load(users, deployed, recorder, newcomers, names, loop=_checking_loop, seen=rolled_back) as load:
        _settle(recorder, seconds=2)
        marks["partition"] = recorder.now()
        cluster.partition(["redis1"], [*SENTINELS, *REPLICAS], state_dir=state_dir)
        marks["promoted"] = _wait(recorder, lambda: any(_roles(state_dir).get(n) == "primary" for n in REPLICAS),
                                  seconds)
        _settle(recorder, seconds=max(0.0, seconds - (recorder.now() - marks["partition"])))
        load.stop()
    marks["heal"] = recorder.now()
    cluster.heal(state_dir=state_dir)
    marks["converged"] = _wait(recorder, lambda: _roles(state_dir).get("redis1") == "replica", TIMEOUT)
    # Read back before anyone writes again: a later write would raise the counter over a lost one.
    audit = _audit([*users, *newcomers], through=deployed.url, presence=False, sides=SIDES)
    windows = {"before promotion": (marks["partition"], marks["promoted"] or marks["heal"]),
               "after promotion": (marks["promoted"] or marks["heal"], marks["heal"])}
    windows = {name: _window(users, rolled_back, recorder.events, start, end)
               for name, (start, end) in windows.items()}
    lost = {(user.name, counter) for user in users for _, counter in user.acknowledged
            if _lost(user, counter, rolled_back)}
    behind = sum(1 for user in users if user.acknowledged and (
        user.stored is None or user.acknowledged[-1][1] > user.stored))
    # Then what the instances do once the old primary is a replica of the new one.
    after = recorder.now()
    with _Load(users, deployed, recorder, [], names) as load:
        _settle(recorder, seconds=seconds / 2)
        load.stop()
    windows["after heal"] = {"acknowledged": sum(ok for t, _, what, ok in recorder.events
                                                 if what == "session write" and t >= after),
                             "refused": sum(not ok for t, _, what, ok in recorder.events
                                            if what == "session write" and t >= after)}
    timeline = _timeline(users, rolled_back, recorder, until=marks["heal"])
    return {"scenario": chosen.name, "primary_cache": chosen.primary_cache, "seconds": seconds,
            "users_per_instance": users_per_instance, "marks": _rounded(marks), **audit, "windows": windows,
            "writes_rolled_back": len(lost),
            "sessions_behind_after_heal": behind, "timeline": timeline}


def _timeline(users, rolled_back, recorder, *, until):
    """Per second: session writes acknowledged, of those the ones lost (acknowledged before `until`), and 503s.

    A write acknowledged and then lost went to a node whose copy did not
    survive: after the promotion, the old primary that was no longer one.
    """
    seconds = int(max((t for t, *_ in recorder.events), default=0)) + 1
    series = {name: [0] * seconds for name in ("session writes acked", "acked, then lost", "answered 503")}
    for user in users:
        for at, counter in user.acknowledged:
            series["session writes acked"][int(at)] += 1
            series["acked, then lost"][int(at)] += at < until and _lost(user, counter, rolled_back)
    for at in recorder.unavailable:
        series["answered 503"][min(int(at), seconds - 1)] += 1
    return series


def _lost(user, counter, rolled_back):
    """Whether the user's acknowledged write of `counter` is gone: rolled back, or above what was read back."""
    return (user.name, counter) in rolled_back or user.stored is None or counter > user.stored


def _window(users, rolled_back, events, start, end):
    """Session writes acknowledged within [start, end) and then lost, and requests refused.

    A write is lost when a later read (the user's own, before its next
    write, or the audit's after the heal) found a lower counter: checking
    only after the heal would miss a write to the old primary that a later
    write to the new one hid.
    """
    acknowledged = lost = 0
    for user in users:
        stored = user.stored
        for at, counter in user.acknowledged:
            if start <= at < end:
                acknowledged += 1
                lost += (user.name, counter) in rolled_back or stored is None or counter > stored
    refused = sum(1 for t, _, _, ok in events if not ok and start <= t < end)
    return {"acknowledged": acknowledged, "lost": lost, "refused": refused}


# The war case: no majority of Sentinels


def _war(state_dir, *, seconds, users_per_instance):
    deployed = Scenario("war").up(state_dir)
    recorder = Recorder(time.monotonic())
    names = accounts(state_dir, INSTANCES, users=users_per_instance, newcomer_seconds=seconds + 3 * TIMEOUT)
    users, newcomers = _users(deployed, names, users_per_instance, recorder)
    marks = {}
    with _Load(users, deployed, recorder, newcomers, names) as load:
        _settle(recorder, seconds=2)
        for sentinel in SENTINELS[:2]:
            cluster.kill(sentinel, state_dir=state_dir)
        marks["sentinels killed"] = recorder.now()
        _settle(recorder, seconds=2)
        cluster.kill("redis1", state_dir=state_dir)
        marks["primary killed"] = recorder.now()
        _settle(recorder, seconds=seconds / 2)
        answer = _answer(users[0])
        _settle(recorder, seconds=seconds / 2)
        promoted_alone = any(_roles(state_dir).get(n) == "primary" for n in REPLICAS)
        cluster.start("sentinel2", state_dir=state_dir)
        marks["sentinel back"] = recorder.now()
        marks["promoted"] = _wait(recorder, lambda: any(_roles(state_dir).get(n) == "primary" for n in REPLICAS),
                                  TIMEOUT)
        marks["first write after"] = _wait(recorder, lambda: _last_write_ok(recorder, marks["sentinel back"]),
                                           TIMEOUT)
        _settle(recorder, seconds=2)
        load.stop()
    audit = _audit([*users, *newcomers], through=deployed.url, presence=False, sides=SIDES)
    timeline = _timeline(users, set(), recorder, until=recorder.now())
    killed, back = marks["primary killed"], marks["sentinel back"]
    writes = [(t, ok) for t, _, what, ok in recorder.events if what == "session write"]
    return {"scenario": "war", "seconds": seconds, "marks": _rounded(marks), **audit,
            "promoted_without_majority": promoted_alone,
            "while_no_majority": {"acknowledged": sum(ok for t, ok in writes if killed <= t < back),
                                  "refused": sum(not ok for t, ok in writes if killed <= t < back)},
            "answer_without_majority": answer, "timeline": timeline}


def _last_write_ok(recorder, since):
    with recorder.lock:
        return any(ok for t, _, what, ok in recorder.events if what == "session write" and t > since)


def _answer(user):
    """What a user is told now on a session write: status and body."""
    try:
        answer = user.call("POST", "/api/session-counter", counter=0, room=ROOM)
    except requests.RequestException as failure:
        return str(failure)
    return f"{answer.status_code} {answer.text[:200]}"


# The maintenance lease under a partition


def _lease(state_dir):
    deployed = Scenario("lease").up(state_dir, env=LEASE_ENV)
    recorder = Recorder(time.monotonic())
    view = _lease_views(deployed)

    def holder():
        for name in INSTANCES:
            state = view(name)
            if state and state["this_instance"]["acting"]:
                return name, state["this_instance"]["token"]
        return None

    held = _wait(recorder, holder, TIMEOUT)
    if held is None:
        raise RuntimeError(f"no instance held the lease within {TIMEOUT} s")
    old, old_token = holder()
    new = next(name for name in INSTANCES if name != old)
    marks = {"partition": recorder.now()}
    cluster.partition([old], ["redis1", *REPLICAS, *SENTINELS], state_dir=state_dir)
    marks["holder stopped acting"] = _wait(recorder, lambda: not (view(old) or {"this_instance": {"acting": 1}})
                                           ["this_instance"]["acting"], TIMEOUT)
    marks["holder gave up"] = _wait(recorder, lambda: not (view(old) or {"this_instance": {"holds": 1}})
                                    ["this_instance"]["holds"], TIMEOUT)
    marks["other took over"] = _wait(recorder, lambda: (view(new) or {"this_instance": {}})
                                     ["this_instance"].get("acting"), TIMEOUT)
    takeover = view(new)
    _settle(recorder, seconds=3)  # a few periods run by the new holder
    cluster.heal(state_dir=state_dir)
    marks["heal"] = recorder.now()
    final = view(new)
    new_token = takeover["this_instance"]["token"]
    late = [run for run in final["recent_runs"] if run["token"] < new_token and run["instance"] == old
            and run["period_start"] > max((r["period_start"] for r in final["recent_runs"]
                                           if r["token"] == new_token), default="")]
    return {"scenario": "lease", "timings": final["timings"], "marks": _rounded(marks),
            "holder": old, "old_token": old_token, "new_holder": new, "new_token": new_token,
            "highest_token_in_database": final["highest_token_in_database"],
            "runs_with_old_token_after_takeover": len(late),
            "last_refused_write": final["last_refused_write"]}


def _lease_late_write(state_dir):
    deployed = cluster.up(instances=2, port=free_base_port(), sessions="redis", presence="redis", db="postgres",
                          namespaces=True, env={**SITE_ENV, **LATE_WRITE_ENV}, state_dir=state_dir)
    recorder = Recorder(time.monotonic())
    epoch = time.time() - recorder.now()  # wall clock at the recorder's zero: the database's times are wall times
    view = _lease_views(deployed)

    caught = {}

    def about_to_write():
        """Catch the holder inside a job's wait, early enough for the cut to land before it writes."""
        for name in INSTANCES:
            state = view(name)
            mine = state and state["this_instance"]
            if mine and mine["acting"] and mine["working"] and mine["working_for"] <= CUT_WITHIN:
                caught.update(name=name, view=mine, seen=recorder.now())
                return True
        return False

    if _wait(recorder, about_to_write, TIMEOUT) is None:
        raise RuntimeError(f"no lease holder was seen inside a job's wait within {TIMEOUT} s")
    old, at_cut = caught["name"], caught["view"]
    new = next(name for name in INSTANCES if name != old)
    marks = {"cut": recorder.now()}
    cluster.partition([old], [], state_dir=state_dir)
    marks["cut in place"] = recorder.now()
    writes_at = caught["seen"] - at_cut["working_for"] + float(LATE_WRITE_ENV["MAINTENANCE_WORK_SECONDS"])
    if marks["cut in place"] >= writes_at:
        raise RuntimeError(f"the cut took {marks['cut in place'] - caught['seen']:.1f} s to land, after {old}'s "
                           "fenced write had gone out: nothing was on its way to arrive late (a busy machine?)")
    marks["other took over"] = _wait(recorder, lambda: (view(new) or {"this_instance": {}})
                                     ["this_instance"].get("acting"), TIMEOUT)
    takeover = view(new)
    if marks["other took over"] is None or takeover is None:
        raise RuntimeError(f"{new} did not take the lease over within {TIMEOUT} s of the cut")
    new_token = takeover["this_instance"]["token"]
    marks["other wrote"] = _wait(recorder, lambda: any(run["token"] == new_token and run["instance"] == new
                                                       for run in (view(new) or {"recent_runs": []})["recent_runs"]),
                                 TIMEOUT)
    marks["heal"] = recorder.now()
    cluster.heal(state_dir=state_dir)

    def refusal():
        refused = (view(new) or {}).get("last_refused_write")
        return refused if refused and refused["instance"] == old else None

    marks["refusal seen"] = _wait(recorder, refusal, TIMEOUT)
    refused = refusal()
    marks["late write refused"] = (datetime.fromisoformat(refused["at"]).timestamp() - epoch) if refused else None
    final = view(new)
    if final is None:
        raise RuntimeError(f"{new} did not answer /api/lease after the heal")
    runs_late = [run for run in final["recent_runs"] if run["instance"] == old and run["token"] < new_token
                 and run["period_start"] > max((r["period_start"] for r in final["recent_runs"]
                                                if r["token"] == new_token), default="")]
    timings = {**final["timings"], "work": float(LATE_WRITE_ENV["MAINTENANCE_WORK_SECONDS"]),
               "tcp_user_timeout": float(LATE_WRITE_ENV["DATABASE_TCP_USER_TIMEOUT"])}
    return {"scenario": "lease-late-write", "timings": timings, "marks": _rounded(marks),
            "holder": old, "old_token": at_cut["token"],
            "holder_at_cut": {"working_for": at_cut["working_for"], "valid_for": at_cut["valid_for"]},
            "new_holder": new, "new_token": new_token,
            "late_write": refused and {"token": refused["token"], "highest_when_it_arrived": refused["highest"]},
            "refused": refused is not None and refused["token"] == at_cut["token"],
            "runs_with_old_token_after_takeover": len(runs_late),
            "highest_token_in_database": final["highest_token_in_database"]}


# Shared machinery


def _lease_views(deployed):
    """A function: an instance's name -> its /api/lease answer, or None when it does not answer.

    Asked by a reader of its own with a bearer token (/api/lease needs a
    login): a token needs no session store, so an instance cut off from
    Redis still answers.
    """
    urls = {name: deployed.instance_url(name) for name in INSTANCES}
    reader = User("reader", deployed.url)
    if not reader.sign_up():
        raise RuntimeError(f"the lease's reader could not sign up at {deployed.url}")
    token = reader.call("POST", "/api/token", username=reader.name, password=PASSWORD).json()["token"]
    headers = {"Authorization": f"Bearer {token}"}

    def view(name):
        try:
            answer = requests.get(f"{urls[name]}/api/lease", headers=headers, timeout=5)
        except requests.RequestException:
            return None
        return answer.json() if answer.status_code == 200 else None

    return view


def _users(deployed, names, users_per_instance, recorder):
    """Each instance's users, logged in (names: accounts(), the instances' names made beforehand)."""
    users = [User(instance, deployed.instance_url(instance), next(names[instance]))
             for instance in INSTANCES for _ in range(users_per_instance)]
    with ThreadPoolExecutor(len(users)) as pool:
        signed = list(pool.map(lambda u: u.log_in(), users))
    if not all(signed):
        raise RuntimeError(f"{signed.count(False)} of {len(users)} users could not log in")
    for user in users:
        user.logged_in_at = recorder.now()
    return users, []


def _checking_loop(user, recorder, stop, rolled_back):
    """Read the session, then write the next counter: a read lower than an acknowledged write is a loss."""
    while not stop.is_set():
        try:
            answer = user.call("GET", "/api/session-counter")
        except requests.RequestException:
            answer = None
        if answer is not None and answer.status_code in (200, 401):
            seen = answer.json().get("counter") if answer.status_code == 200 else None
            rolled_back.update((user.name, counter) for _, counter in user.acknowledged
                               if seen is None or counter > seen)
        user.counter += 1
        status = _status(lambda: user.call("POST", "/api/session-counter", counter=user.counter, room=ROOM))
        if status == 200:
            user.acknowledged.append((recorder.now(), user.counter))
        recorder.note(user.side, "session write", status == 200, status)
        stop.wait(TICK)


class _Load:
    """Every user's loop and a newcomer per instance while `names` (accounts()) last, from `with` until stop()."""

    def __init__(self, users, deployed, recorder, newcomers, names, *, loop=_user_loop, seen=None):
        self.users, self.deployed, self.recorder, self.newcomers = users, deployed, recorder, newcomers
        self.names = names
        self.loop, self.extra = loop, () if seen is None else (seen,)

    def __enter__(self):
        self.stopped = threading.Event()
        self.pool = ThreadPoolExecutor(len(self.users) + len(INSTANCES))
        self.loops = [self.pool.submit(self.loop, user, self.recorder, self.stopped, *self.extra)
                      for user in self.users]
        self.loops += [self.pool.submit(_newcomer_loop, name, self.deployed.instance_url(name), self.recorder,
                                        self.stopped, self.newcomers, self.names[name]) for name in INSTANCES]
        return self

    def stop(self):
        self.stopped.set()
        for loop in self.loops:
            loop.result()

    def __exit__(self, *failure):
        self.stopped.set()
        self.pool.shutdown(wait=True)


def _wait(recorder, condition, seconds):
    """When condition() first held (seconds since the start), or None within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return recorder.now()
        time.sleep(0.1)
    return None


def _rounded(marks):
    return {name: None if t is None else round(t, 2) for name, t in marks.items()}


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
                        f"| {r['sessions_behind_after_heal']} of {len(r['sides']) * r['users_per_instance']} "
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


def write(results, out, run):
    """fate.json, report.md, a timeline SVG per scenario, and the page (loadtest/_page.py); return the tables."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "fate.json").write_text(json.dumps({"command": run.command, "results": results}, indent=1))
    text = tables(results)
    (out / "report.md").write_text(f"# Fate sharing\n\nCommand: `{run.command}`\n\n{text}\n")
    svgs = []
    for result in results:
        svgs.append(chart(result))
        (out / f"fate-{result['scenario']}.svg").write_text(svgs[-1])
    page.write(out, run, title="Fate sharing: a cached primary, no Sentinel majority, the lease cut off",
               headline=headline(results), sections=[
                   ("", page.paragraphs(
                       "primary-*: the Redis primary cut off from the Sentinels and the replicas, not from the "
                       "instances; REDIS_PRIMARY_CACHE decides whether an instance goes on writing to it after the "
                       "promotion. war: two of three Sentinels gone, then the primary killed. lease: the maintenance "
                       "lease's holder cut off from Redis. lease-late-write: the holder cut off from "
                       "everything while its fenced write is on its way; the write arrives after the heal.")),
                   ("", page.markdown(text)),
                   ("Timelines", page.paragraphs(
                       "Per second: session writes acknowledged, those of them lost after the heal (they went to "
                       "a node whose copy did not survive), and answers 503; dashed lines mark the partition, "
                       "the promotion, the heal.") + page.charts(svgs)),
               ])
    return text
