"""The kill experiment's reading: what its figures say, in sentences, and the store-kill run's targets met or not."""


from labcore import registry
from loadtest.experiments.configs import parse_config
from loadtest.experiments.kill_cells import num
from loadtest.experiments.kill_run import STORE_FAULTS, store_of

# Targets of the store-kill run (issue 17): Sentinel answers again within
# this many seconds, and no request waits longer than the store's timeout
# (the site's STORE_TIMEOUT, 0.5 s by default) plus this margin.
FAILOVER_TARGET_S = 5


STORE_TIMEOUT_S = 0.5


HANG_MARGIN_S = 1


# Failures are routine: a server dies with probability 0.1 % a day, so a
# fleet of 32,000 (the servers one 2022 data-centre fire took down) loses 32 every day.
FLEET, DAILY_DEATH_RATE = 32_000, 0.001


def plain_reading(results, faults):
    """A few sentences a person can read next to the charts; `faults` is the run's fault schedule's name."""
    if any(r.get("store") for r in results):
        return store_reading(results, faults) + load_reading(results)
    lines = []
    lost = [r for r in results if r["users_lost_session"]]
    kept = [r for r in results if not r["users_lost_session"]]
    for r in lost:
        name = r["config"]["name"]
        in_process = not registry.SESSION_STORES[r["config"]["sessions"]].survives_instance_death
        if r["config"]["lb"] == "roundrobin" and in_process:
            lines.append(
                f"{name}: a login lives in one process and round robin sends the next request elsewhere, so "
                f"sessions were lost {r['sessions_lost']} times in the window, kill or no kill: "
                f"{r['users_lost_session']} of {r['users']} users.")
        else:
            deaths = round(FLEET * DAILY_DEATH_RATE)
            lines.append(
                f"{name}: the process holds the logins, so when it died {r['users_lost_session']} of "
                f"{r['users']} users ({r['users_lost_session_pct']:.0f}%) lost theirs and had to log in again. "
                f"Deaths are routine, not exceptional: at {DAILY_DEATH_RATE:.1%} of servers a day, a fleet of "
                f"{FLEET:,} loses {deaths} every day, and each would log out everyone it served, as this one did.")
    if kept:
        names = ", ".join(r["config"]["name"] for r in kept)
        lines.append(f"{names}: no user lost a session; the state lives outside the web process, so any "
                     "instance could serve any user after the kill.")
    lines.extend(load_reading(results))
    memory_presence = [r for r in results if registry.PRESENCE_STORES[r["config"]["presence"]].per_instance
                       and r["presence_accuracy"] is not None]
    if memory_presence:
        r = memory_presence[0]
        lines.append(f"Presence in process memory listed only {r['presence_accuracy']:.0%} of the active users "
                     "on average: each instance knows only the heartbeats that reached it.")
    bad = [r for r in results if r["messages_lost"] or r["messages_duplicated"]]
    if bad:
        lines.extend(f"{r['config']['name']}: {r['messages_lost']} acknowledged messages lost and "
                     f"{r['messages_duplicated']} duplicated." for r in bad)
    else:
        total = sum(r["messages_acknowledged"] for r in results)
        lines.append(f"Every one of the {total} acknowledged messages is in the database exactly once, in every "
                     "configuration: messages are hard state, and a retried post carries its client_id.")
    skipping = [r for r in results if r["messages_missed_by_pollers"] or r["messages_seen_twice_by_pollers"]]
    if skipping:
        lines.extend(f"{r['config']['name']}: users' polls missed {r['messages_missed_by_pollers']} messages of "
                     f"their room and received {r['messages_seen_twice_by_pollers']} twice." for r in skipping)
    else:
        lines.append("Every user's polls received each message of its room exactly once, from the cursor it "
                     "started with to the last it held: a room's messages commit in id order, so a cursor "
                     "never passes one still to come.")
    return lines


def store_reading(results, faults):
    """What the store's failure did to each configuration, in words built from its figures (under an instance
    fault with session writes, what the instance's failure did to the sessions)."""
    lines = []
    for r in results:
        name, store, topology = r["config"]["name"], r["store"], r["config"]["topology"]
        struck = store_of_result(r) if faults in STORE_FAULTS else None
        # etcd acknowledges a write once a majority of its members has it: synchronous by construction.
        sync = topology["redis_sync"] or topology["pg_sync"].lower() not in ("off", "") or struck == "etcd"
        waited = "a majority of etcd's members" if struck == "etcd" else "a replica"
        lost = store["writes_lost"] + store["logins_lost"] + r["messages_lost"]
        parts = [f"requests failed for {store['failover_s']:g} s after the {r['faults'][0]['action']} "
                 f"({r['failures']} failed in all)" if store["failover_s"] else "no request failed at the fault"]
        if r["config"]["sessions"] == "signed_cookies":
            parts.append("the session travels in the cookie, so there was nothing in the store to lose; what "
                         "failed were the requests that need Redis: presence and the login throttle's counters")
        elif lost and _restarted_at_once(r["faults"]) and struck == "redis" and topology["redis"] != "single":
            watchers, whose, confirmed = (
                ("any Sentinel", "", ", however many had confirmed each write") if topology["redis"] == "sentinel"
                else ("the other nodes", " (its shard's sessions only)", ""))
            parts.append(f"{store['writes_lost']} acknowledged session writes and {store['logins_lost']} logins "
                         f"were lost{whose}: the primary came back empty before {watchers} missed it, still "
                         f"primary, and its replicas copied the emptiness{confirmed}")
        elif lost and sync:
            parts.append(f"{store['writes_lost']} acknowledged session writes, {store['logins_lost']} logins and "
                         f"{r['messages_lost']} messages lost although each waited for {waited}: see the "
                         "failover's timeline")
        elif lost:
            parts.append(
                f"{store['writes_lost']} of {store['writes_acknowledged']} acknowledged session writes and "
                f"{store['logins_lost']} of {store['logins_acknowledged']} logins were lost, and "
                f"{r['messages_lost']} messages"
                + (": without replicas a store that comes back empty takes every session with it"
                   if topology["redis"] == "single" and not topology["pg_standbys"] else
                   ": the primary acknowledged them before a replica had them, and the node that took its "
                   "place never got them (asynchronous replication)"))
        elif sync and struck == "etcd":  # the messages live in the database, not in etcd
            parts.append(f"all {store['writes_acknowledged']} acknowledged session writes and "
                         f"{store['logins_acknowledged']} logins survived: each was on {waited} before the site "
                         "answered")
        elif sync:
            why = ("the primary came back with its own write-ahead log" if _restarted_at_once(r["faults"])
                   and topology["pg_standbys"] else "each was on a replica before the site answered")
            parts.append(f"all {store['writes_acknowledged']} acknowledged session writes, "
                         f"{store['logins_acknowledged']} logins and {r['messages_acknowledged']} messages "
                         f"survived: {why}")
        else:
            parts.append(f"nothing acknowledged was lost ({store['writes_acknowledged']} session writes, "
                         f"{store['logins_acknowledged']} logins), though nothing waited for a replica either")
        if store["sessions_gone_at_end"]:
            parts.append(f"{store['sessions_gone_at_end']} of the {store['sessions_read']} sessions read back after "
                         f"the run ({store['users_gone_at_end']} users') were gone")
        if store["unreadable"]:
            parts.append(f"{store['unreadable']} sessions could not be read back (the store still failing)")
        lines.append(f"{name}: " + "; ".join(parts) + ".")
    return lines


def _restarted_at_once(faults):
    """True if the run killed a node and started it again within a second (store-restart)."""
    return (len(faults) >= 2 and (faults[0]["action"], faults[1]["action"]) == ("kill", "start")
            and faults[1]["at"] - faults[0]["at"] < 1)


def store_targets(results, faults):
    """The store-kill run's targets, each {target, met, figure}; none for other runs."""
    if faults != "store-kill":
        return []
    targets = []
    for r in results:
        name, store, topology = r["config"]["name"], r["store"], r["config"]["topology"]
        if topology["redis"] == "sentinel" and store_of_result(r) == "redis":
            targets.append({"target": f"{name}: requests succeed again within {FAILOVER_TARGET_S} s",
                            "met": store["failover_s"] <= FAILOVER_TARGET_S, "figure": f"{store['failover_s']:g} s"})
            bound = 1000 * (STORE_TIMEOUT_S + HANG_MARGIN_S)
            targets.append({"target": f"{name}: no request longer than STORE_TIMEOUT + {HANG_MARGIN_S} s",
                            "met": r["longest_ms"] is not None and r["longest_ms"] <= bound,
                            "figure": f"longest {num(r['longest_ms'])} ms against {bound:g} ms"})
        if topology["redis_sync"] or topology["pg_sync"].lower() not in ("off", ""):
            lost = (store["writes_lost"], store["logins_lost"], r["messages_lost"])
            targets.append({"target": f"{name}: 0 acknowledged session writes, logins and messages lost",
                            "met": lost == (0, 0, 0), "figure": "lost {} / {} / {}".format(*lost)})
    return targets


def store_of_result(result):
    """The store the run's store fault hit (kill_run.store_of), from the configuration's saved name."""
    return store_of(parse_config(result["config"]["name"]))


def load_reading(results):
    """What the load did to each configuration: the generator, overload and queueing, the fault's cost."""
    lines = []
    for r in results:
        name = r["config"]["name"]
        if r["generator_saturated"]:
            lines.append(f"{name}: the load generator was saturated ({r['generator_cpu']:.0%} of a core in its "
                         "busiest process), so its latency and throughput describe Locust as much as the site.")
        if r["queued_peak"]:
            lines.append(f"{name}: up to {r['queued_peak']} requests waited in HAProxy's queue for a free slot "
                         "on an instance: the instances were full, and requests queued in front of them.")
        fault = r["fault"]
        if fault:
            lines.append(_fault_sentence(name, fault))
    if len(results) > 1:
        timed = [r for r in results if r["p50_ms"] is not None]
        if timed:
            fastest = min(timed, key=lambda r: r["p50_ms"])
            slowest = max(timed, key=lambda r: r["p50_ms"])
            if slowest["p50_ms"] > fastest["p50_ms"]:
                lines.append(f"Median latency ranged from {fastest['p50_ms']:g} ms ({fastest['config']['name']}) to "
                             f"{slowest['p50_ms']:g} ms ({slowest['config']['name']}).")
            else:
                lines.append(f"Median latency was {fastest['p50_ms']:g} ms in every configuration.")
    elif results and results[0]["p50_ms"] is not None:
        r = results[0]
        lines.append(f"{r['config']['name']}: median latency {r['p50_ms']:g} ms, p99 {r['p99_ms']:g} ms, "
                     f"{r['rps']:g} requests a second.")
    return lines


def _fault_sentence(name, fault):
    before, after = fault["before"], fault["after"]
    what = f"{fault['action']} {fault['target']}"
    if before["p99_ms"] is None or after["p99_ms"] is None:
        return f"{name}: too few requests around the {what} to compare latency."
    span = fault["span"]
    if not str(fault["target"]).startswith("app") and fault["action"] != "scale":
        return (f"{name}: p99 was {before['p99_ms']:g} ms in the {span} s before the {what} and "
                f"{after['p99_ms']:g} ms in the {span} s after; {after['failures']} requests failed in those "
                f"{span} s against {before['failures']} before.")
    if after["p99_ms"] > 1.5 * before["p99_ms"]:
        latency = (f"p99 rose from {before['p99_ms']:g} ms in the {span} s before the {what} to "
                   f"{after['p99_ms']:g} ms in the {span} s after, as the surviving instances took its share")
    else:
        latency = (f"p99 stayed near its level ({before['p99_ms']:g} ms before the {what}, {after['p99_ms']:g} ms "
                   f"in the {span} s after): the surviving instances absorbed its share")
    if after["failures"] > before["failures"]:
        cost = f"{after['failures']} requests failed in those {span} s against {before['failures']} before"
    elif after["failures"]:
        cost = f"failures did not rise ({after['failures']} in those {span} s, {before['failures']} before)"
    else:
        cost = "no request failed: HAProxy retried the refused connections on another instance"
    return f"{name}: {latency}; {cost}."
