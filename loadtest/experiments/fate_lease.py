"""Fate sharing's lease scenarios (loadtest/experiments/fate.py): the lease's holder cut off, recorded into the history.

Each /api/lease answer the figures need, and when each awaited condition
first held, is a sample of the run's history; figures() computes the
scenario's figures from those samples and the faults alone.

- `lease`: the holder cut off from Redis: when it stops acting, when another
  instance holds the lease, and whether a run with the old token came after.
- `lease-late-write`: the holder cut off from everything while a job is
  between deciding and writing; its fenced write arrives after the heal,
  and the fence must refuse it.
"""

import time
from datetime import datetime

import requests

from deploy import cluster
from deploy.cluster import free_base_port
from loadtest.harness import checkers
from loadtest.harness.load import SITE_ENV, settle, wait
from loadtest.harness.nemesis import Nemesis
from loadtest.harness.site import OPERATION_TIMEOUT, Site
from loadtest.harness.verdict import Check

INSTANCES = ["app1", "app2"]
STORE_NODES = ["redis1", "redis2", "redis3", "sentinel1", "sentinel2", "sentinel3"]
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
READER = "lease reader"  # a name the sign-up form refuses (a space), as the audit's

HYPOTHESIS = [
    Check("lease", "runs with the old token after the takeover", "runs_with_old_token_after_takeover", 0, 0),
    Check("lease", "the other instance acts only after the holder gave the lease up", "took_over_after_giving_up",
          1, 1),
    Check("lease-late-write", "the fence refuses the late write", "refused", 1, 1),
    Check("lease-late-write", "runs with the old token after the takeover", "runs_with_old_token_after_takeover",
          0, 0),
]


def lease(deployed, state_dir, history):
    view = views(deployed, state_dir)

    def holder():
        for name in INSTANCES:
            state = view(name)
            if state and state["this_instance"]["acting"]:
                return name, state["this_instance"]["token"]
        return None

    if wait(history, "held", lambda: holder() is not None, TIMEOUT) is None:
        raise RuntimeError(f"no instance held the lease within {TIMEOUT} s")
    old, old_token = holder()
    new = next(name for name in INSTANCES if name != old)
    history.sample(holder={"old": old, "old_token": old_token, "new": new})
    faults = Nemesis(history, state_dir=state_dir)
    faults.act("partition", [old], {"from": STORE_NODES})
    wait(history, "holder stopped acting", lambda: not _this(view(old), "acting", 1), TIMEOUT)
    wait(history, "holder gave up", lambda: not _this(view(old), "holds", 1), TIMEOUT)
    wait(history, "other took over", lambda: _this(view(new), "acting", None), TIMEOUT)
    history.sample(takeover=view(new))
    settle(seconds=3)  # a few periods run by the new holder
    faults.act("heal")
    history.sample(final=view(new))


def late_write(state_dir, history):
    deployed = cluster.up(instances=2, port=free_base_port(), sessions="redis", presence="redis", db="postgres",
                          namespaces=True, env={**SITE_ENV, **LATE_WRITE_ENV}, state_dir=state_dir)
    # The database's times are wall times: the wall clock at the history's zero turns them into its clock.
    history.sample(epoch=time.time() - history.now())
    view = views(deployed, state_dir)
    caught = {}

    def about_to_write():
        """Catch the holder inside a job's wait, early enough for the cut to land before it writes."""
        for name in INSTANCES:
            state = view(name)
            mine = state and state["this_instance"]
            if mine and mine["acting"] and mine["working"] and mine["working_for"] <= CUT_WITHIN:
                caught.update(name=name, view=mine, seen=history.now())
                return True
        return False

    if wait(history, "holder about to write", about_to_write, TIMEOUT) is None:
        raise RuntimeError(f"no lease holder was seen inside a job's wait within {TIMEOUT} s")
    old, at_cut = caught["name"], caught["view"]
    new = next(name for name in INSTANCES if name != old)
    history.sample(holder={"old": old, "old_token": at_cut["token"], "new": new, "at_cut": at_cut})
    faults = Nemesis(history, state_dir=state_dir)
    cut = faults.act("partition", [old])  # from everything: Redis, the database, the other instance
    if cut["effect"] is None:
        raise RuntimeError(f"the partition's rules were not in place within {faults.deadline:g} s")
    writes_at = caught["seen"] - at_cut["working_for"] + float(LATE_WRITE_ENV["MAINTENANCE_WORK_SECONDS"])
    if cut["effect"] >= writes_at:
        raise RuntimeError(f"the cut took {cut['effect'] - caught['seen']:.1f} s to land, after {old}'s "
                           "fenced write had gone out: nothing was on its way to arrive late (a busy machine?)")
    if wait(history, "other took over", lambda: _this(view(new), "acting", None), TIMEOUT) is None:
        raise RuntimeError(f"{new} did not take the lease over within {TIMEOUT} s of the cut")
    takeover = view(new)
    if takeover is None:
        raise RuntimeError(f"{new} did not answer /api/lease after taking the lease over")
    history.sample(takeover=takeover)
    new_token = takeover["this_instance"]["token"]
    wait(history, "other wrote", lambda: any(run["token"] == new_token and run["instance"] == new
                                             for run in (view(new) or {"recent_runs": []})["recent_runs"]), TIMEOUT)
    faults.act("heal")

    def refusal():
        refused = (view(new) or {}).get("last_refused_write")
        return refused if refused and refused["instance"] == old else None

    wait(history, "refusal seen", lambda: refusal() is not None, TIMEOUT)
    final = view(new)
    if final is None:
        raise RuntimeError(f"{new} did not answer /api/lease after the heal")
    history.sample(final=final)


def views(deployed, state_dir):
    """A function: an instance's name -> its /api/lease answer, or None when it does not answer.

    Asked with a bearer token (/api/lease needs a login) from deploy, as the
    audit reads (loadtest/harness/audit.py): a token needs no session store, so an
    instance cut off from Redis still answers.
    """
    token = cluster.api_token(READER, state_dir=state_dir)
    readers = {name: Site(deployed.instance_url(name), token=token, timeout=OPERATION_TIMEOUT) for name in INSTANCES}

    def view(name):
        try:
            answer = readers[name].request("GET", "/api/lease")
        except requests.RequestException:
            return None
        return answer.json() if answer.status_code == 200 else None

    return view


def _this(state, key, default):
    """The instance's own lease state's `key`, or default when it did not answer."""
    return (state or {"this_instance": {key: default}})["this_instance"].get(key, default)


# Figures, from the history alone


def figures(events, name):
    origin = checkers.condition(events, "started")
    (cut,) = checkers.faults(events, "partition")
    holder, takeover, final = (_sample(events, key) for key in ("holder", "takeover", "final"))
    new_token = takeover["this_instance"]["token"]
    late = [run for run in final["recent_runs"] if run["token"] < new_token and run["instance"] == holder["old"]
            and run["period_start"] > max((r["period_start"] for r in final["recent_runs"]
                                           if r["token"] == new_token), default="")]
    result = {"scenario": name, "holder": holder["old"], "old_token": holder["old_token"],
              "new_holder": holder["new"], "new_token": new_token,
              "highest_token_in_database": final["highest_token_in_database"],
              "runs_with_old_token_after_takeover": len(late)}
    conditions = {n: checkers.condition(events, n) for n in ("holder stopped acting", "holder gave up",
                                                             "other took over", "other wrote")}
    if name == "lease":
        marks = {"partition": cut["effect"], **{n: conditions[n] for n in list(conditions)[:3]},
                 "heal": cut["ended"]}
        gave_up, took_over = conditions["holder gave up"], conditions["other took over"]
        return {**result, "timings": final["timings"], "marks": relative(marks, origin),
                "took_over_after_giving_up": None if None in (gave_up, took_over) else gave_up <= took_over,
                "last_refused_write": final["last_refused_write"]}
    refused = final.get("last_refused_write")
    refused = refused if refused and refused["instance"] == holder["old"] else None
    arrived = None if refused is None else datetime.fromisoformat(refused["at"]).timestamp() - _sample(events,
                                                                                                      "epoch")
    marks = {"cut": cut["sent"], "cut in place": cut["effect"], "other took over": conditions["other took over"],
             "other wrote": conditions["other wrote"], "heal": cut["ended"],
             "refusal seen": checkers.condition(events, "refusal seen"), "late write refused": arrived}
    timings = {**final["timings"], "work": float(LATE_WRITE_ENV["MAINTENANCE_WORK_SECONDS"]),
               "tcp_user_timeout": float(LATE_WRITE_ENV["DATABASE_TCP_USER_TIMEOUT"])}
    at_cut = holder["at_cut"]
    return {**result, "timings": timings, "marks": relative(marks, origin),
            "holder_at_cut": {"working_for": at_cut["working_for"], "valid_for": at_cut["valid_for"]},
            "late_write": refused and {"token": refused["token"], "highest_when_it_arrived": refused["highest"]},
            "refused": refused is not None and refused["token"] == at_cut["token"]}


def _sample(events, key):
    return next(e[key] for e in events if e["type"] == "sample" and key in e)


def relative(marks, origin):
    return {name: None if t is None else round(t - origin, 2) for name, t in marks.items()}
