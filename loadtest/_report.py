"""Write the kill experiment's output: results.json, summary.md, the charts, and its page (loadtest/_page.py)."""

import json
from html import escape

from labcore import registry
from loadtest import _page as page
from loadtest._experiment import STORE_FAULTS
from loadtest._svg import PALETTE, bar_chart, line_chart, share_chart

COLUMNS = [
    ("configuration", lambda r: r["config"]["name"]),
    ("users", lambda r: _users(r["load"])),
    ("users lost session", lambda r: f"{r['users_lost_session_pct']:.0f}% ({r['users_lost_session']}/{r['users']})"),
    ("sessions lost", lambda r: str(r["sessions_lost"])),
    ("failed requests", lambda r: f"{r['failed_pct']:.2f}% ({r['failures']})"),
    ("req/s", lambda r: _rate(r)),
    ("p50 ms", lambda r: _num(r["p50_ms"])),
    ("p99 ms", lambda r: _num(r["p99_ms"])),
    ("messages acked/lost/dup",
     lambda r: f"{r['messages_acknowledged']}/{r['messages_lost']}/{r['messages_duplicated']}"),
    ("polls missed/twice",
     lambda r: f"{r['messages_missed_by_pollers']}/{r['messages_seen_twice_by_pollers']}"),
    ("presence accuracy", lambda r: "n/a" if r["presence_accuracy"] is None else f"{r['presence_accuracy']:.0%}"),
    ("busiest instance", lambda r: _busiest(r["served_share"])),
    ("p99 ms before/after fault", lambda r: _fault_p99(r["fault"])),
    ("peak queued in HAProxy", lambda r: _num(r["queued_peak"])),
    ("generator CPU", lambda r: _generator(r)),
]
# The store-fault experiments' table: what the store's failure cost users.
STORE_COLUMNS = [
    ("configuration", lambda r: r["config"]["name"]),
    ("faults", lambda r: _faults_text(r["faults"])),
    ("users", lambda r: _users(r["load"])),
    ("users lost session", lambda r: f"{r['users_lost_session_pct']:.0f}% ({r['users_lost_session']}/{r['users']})"),
    ("acked session writes lost", lambda r: f"{r['store']['writes_lost']} of {r['store']['writes_acknowledged']}"),
    ("acked logins lost", lambda r: f"{r['store']['logins_lost']} of {r['store']['logins_acknowledged']}"),
    ("failed requests", lambda r: f"{r['failed_pct']:.2f}% ({r['failures']})"),
    ("failover s", lambda r: _num(r["store"]["failover_s"])),
    ("longest request ms", lambda r: _num(r["longest_ms"])),
    ("p50/p99 ms", lambda r: f"{_num(r['p50_ms'])}/{_num(r['p99_ms'])}"),
    ("messages acked/lost/dup",
     lambda r: f"{r['messages_acknowledged']}/{r['messages_lost']}/{r['messages_duplicated']}"),
    ("polls missed/twice",
     lambda r: f"{r['messages_missed_by_pollers']}/{r['messages_seen_twice_by_pollers']}"),
]
# Targets of the store-kill run (issue 17): Sentinel answers again within
# this many seconds, and no request waits longer than the store's timeout
# (the site's STORE_TIMEOUT, 0.5 s by default) plus this margin.
FAILOVER_TARGET_S = 5
STORE_TIMEOUT_S = 0.5
HANG_MARGIN_S = 1
# Failures are routine: a server dies with probability 0.1 % a day, so a
# fleet of 32,000 (the servers one 2022 data-centre fire took down) loses 32 every day.
FLEET, DAILY_DEATH_RATE = 32_000, 0.001
CAPACITY_COLUMNS = ["users", "req/s", "p50 ms", "p99 ms", "failed", "generator CPU", "machine busy",
                    "peak queued", "held"]


def columns_for(results):
    return STORE_COLUMNS if any(r.get("store") for r in results) else COLUMNS


def write_report(out, run, plan, results, capacities=(), verdict=None):
    charts = out / "charts"
    charts.mkdir(parents=True, exist_ok=True)
    timelines = {r["config"]["name"]: timeline_svg(r) for r in results}
    for name, svg in timelines.items():
        (charts / f"timeline-{name.replace('+', '-')}.svg").write_text(svg)
    bars = bars_svgs(results)
    for key, svg in bars.items():
        (charts / f"{key}.svg").write_text(svg)

    (out / "results.json").write_text(json.dumps({"plan": plan, "capacity": list(capacities), "configs": results},
                                                 indent=1))
    summary = summary_table(results)
    reading = plain_reading(results)
    targets = store_targets(results, plan["faults"])
    if targets:
        summary += "\n\n" + "\n".join(f"- {'met' if t['met'] else 'NOT met'}: {t['target']} ({t['figure']})"
                                       for t in targets)
    capacity = f"\n\n## Capacity steps\n\n{capacity_table(capacities)}" if capacities else ""
    (out / "summary.md").write_text(
        f"# {_title(plan)}\n\n{_plan_line(plan)}\n\n{summary}\n\n" + "\n".join(f"- {line}" for line in reading)
        + capacity + "\n"
    )
    page.write(out, run, title=_page_title(plan), headline=headline(plan, results), verdict=verdict,
               sections=report_sections(plan, results, summary_rows(results), reading, bars, timelines, capacities))
    return summary


def summary_rows(results):
    return [[cell(r) for _, cell in columns_for(results)] for r in results]


def summary_table(results):
    columns = columns_for(results)
    header = "| " + " | ".join(name for name, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    rows = ["| " + " | ".join(row) + " |" for row in summary_rows(results)]
    return "\n".join([header, rule, *rows])


def timeline_svg(result):
    t = result["timeline"]
    markers = [(f["at"], f"{f['action']} {f['target']}") for f in result["faults"]]
    panels = [
        ("requests/s", t["requests"], PALETTE[0], ""),
        ("failed requests/s", t["failures"], PALETTE[1], ""),
        ("sessions lost/s", t["sessions_lost"], PALETTE[4], ""),
        ("p95 latency", t["p95_ms"], PALETTE[3], " ms"),
    ]
    height = 120
    inner = [
        f'<g transform="translate(0 {i * height})">'
        + line_chart(title, t["t"], values, markers=markers, color=color, unit=unit, height=height)
        + "</g>"
        for i, (title, values, color, unit) in enumerate(panels)
    ]
    total = height * len(panels)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 640 {total}" width="640" height="{total}">'
            + "".join(inner) + "</svg>")


def bars_svgs(results):
    names = [r["config"]["name"] for r in results]

    def rows(key):
        return list(zip(names, (r[key] for r in results)))

    accuracy = [(n, None if r["presence_accuracy"] is None else 100 * r["presence_accuracy"])
                for n, r in zip(names, results)]
    store = {}
    if any(r.get("store") for r in results):
        store = {
            "session-writes-lost": bar_chart("Acknowledged session writes lost",
                                             [(n, r["store"]["writes_lost"]) for n, r in zip(names, results)],
                                             color=PALETTE[4], digits=0),
            "logins-lost": bar_chart("Acknowledged logins lost",
                                     [(n, r["store"]["logins_lost"]) for n, r in zip(names, results)],
                                     color=PALETTE[4], digits=0),
            "failover": bar_chart("Failover time (fault to requests succeeding again)",
                                  [(n, r["store"]["failover_s"]) for n, r in zip(names, results)],
                                  unit=" s", color=PALETTE[3]),
        }
    return {
        **store,
        "users-lost-session": bar_chart("Users who lost their session", rows("users_lost_session_pct"),
                                        unit="%", color=PALETTE[4], digits=0),
        "failed-requests": bar_chart("Failed requests", rows("failed_pct"), unit="%", color=PALETTE[1], digits=2),
        "p50-latency": bar_chart("p50 latency", rows("p50_ms"), unit=" ms", color=PALETTE[3]),
        "p99-latency": bar_chart("p99 latency", rows("p99_ms"), unit=" ms", color=PALETTE[3]),
        "messages-lost": bar_chart("Acknowledged messages lost or duplicated",
                                   [(n, r["messages_lost"] + r["messages_duplicated"]) for n, r in zip(names, results)],
                                   color=PALETTE[1], digits=0),
        "presence-accuracy": bar_chart("Presence accuracy", accuracy, unit="%", color=PALETTE[2], digits=0),
        "instance-share": share_chart("Each instance's share of requests",
                                      [(n, r["served_share"]) for n, r in zip(names, results)]),
    }


def plain_reading(results):
    """A few sentences a person can read next to the charts."""
    if any(r.get("store") for r in results):
        return store_reading(results) + load_reading(results)
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


def store_reading(results):
    """What the store's failure did to each configuration, in words built from its figures."""
    lines = []
    for r in results:
        name, store, topology = r["config"]["name"], r["store"], r["config"]["topology"]
        sync = topology["redis_sync"] or topology["pg_sync"].lower() not in ("off", "")
        lost = store["writes_lost"] + store["logins_lost"] + r["messages_lost"]
        parts = [f"requests failed for {store['failover_s']:g} s after the {r['faults'][0]['action']} "
                 f"({r['failures']} failed in all)" if store["failover_s"] else "no request failed at the fault"]
        if r["config"]["sessions"] == "signed_cookies":
            parts.append("the session travels in the cookie, so there was nothing in the store to lose; what "
                         "failed were the requests that need Redis: presence and the login throttle's counters")
        elif lost and _restarted_at_once(r["faults"]) and topology["redis"] == "sentinel":
            parts.append(f"{store['writes_lost']} acknowledged session writes and {store['logins_lost']} logins "
                         "were lost: the primary came back empty before any Sentinel missed it, still primary, "
                         "and its replicas copied the emptiness, however many had confirmed each write")
        elif lost and sync:
            parts.append(f"{store['writes_lost']} acknowledged session writes, {store['logins_lost']} logins and "
                         f"{r['messages_lost']} messages lost although each waited for a replica: see the "
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
                            "figure": f"longest {_num(r['longest_ms'])} ms against {bound:g} ms"})
        if topology["redis_sync"] or topology["pg_sync"].lower() not in ("off", ""):
            lost = (store["writes_lost"], store["logins_lost"], r["messages_lost"])
            targets.append({"target": f"{name}: 0 acknowledged session writes, logins and messages lost",
                            "met": lost == (0, 0, 0), "figure": "lost {} / {} / {}".format(*lost)})
    return targets


def store_of_result(result):
    return "pg" if result["config"]["db"] == "postgres" else "redis"


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


def capacity_held(c):
    return f"held {c['rps']:g} req/s with {c['users']} users" if c["users"] else "held no step"


def capacity_line(c):
    """What a capacity step found, in one sentence after the configuration's name."""
    best = capacity_held(c)
    transient = c.get("transient")
    passed = (f"; {', '.join(map(str, transient))} users went over the bounds once and the next step held"
              if transient else "")
    return f"{best}{passed}; stopped {c['stopped_by']}. Steps: {c['described']}."


def capacity_table(capacities):
    lines = []
    for c in capacities:
        lines.append(f"**{c['config']}**: {capacity_line(c)}\n")
        lines.append("| " + " | ".join(CAPACITY_COLUMNS) + " |")
        lines.append("|" + "|".join("---" for _ in CAPACITY_COLUMNS) + "|")
        for row in c["steps"]:
            cells = [str(row["users"]), f"{row['rps']:g}", _num(row["p50_ms"]), _num(row["p99_ms"]),
                     f"{row['failed_pct']:.2f}%", _generator(row), _share(row["machine_busy"]),
                     _num(row["queued_peak"]), "yes" if row["held"] else "no"]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines).strip()


def write_capacity(out, run, capacities, described):
    """The capacity command's page: each configuration's steps, and the rate it held."""
    headline = "; ".join(f"{c['config']}: {capacity_held(c)}" for c in capacities)
    page.write(out, run, title="Capacity: the highest request rate held within bounds", headline=headline,
               sections=[("", page.paragraphs(f"Capacity steps: {described}.")),
                         ("", page.markdown(capacity_table(capacities)))])


def report_sections(plan, results, rows, reading, bars, timelines, capacities=()):
    """The kill experiment's page below its title: the plan, the reading, the targets, the table, the charts."""
    sections = "".join(
        f"<section class=config><h3>{escape(r['config']['name'])}</h3>"
        f"<p class=meta>sessions {escape(r['config']['sessions'])}, presence {escape(r['config']['presence'])}, "
        f"load balancing {escape(r['config']['lb'])}; faults: "
        f"{escape(_faults_text(r['faults']))}</p>"
        f"{timelines[r['config']['name']]}</section>"
        for r in results
    )
    targets = store_targets(results, plan["faults"])
    return [
        ("", f"<p class=meta>{escape(_plan_line(plan))}</p>"),
        ("Reading", page.bullets(reading)),
        ("Targets" if targets else "", page.bullets(
            f"{'met' if t['met'] else 'NOT met'}: {t['target']} ({t['figure']})" for t in targets) if targets else ""),
        ("Capacity steps" if capacities else "", page.markdown(capacity_table(capacities)) if capacities else ""),
        ("Side by side", page.table([name for name, _ in columns_for(results)], rows) + page.charts(bars.values())),
        ("Timelines", "<p class=meta>Time 0 is the end of the warm-up; dashed lines mark the faults.</p>"
                      f"<div class=configs>{sections}</div>"),
    ]


def headline(plan, results):
    """The figure that matters, per configuration: acknowledged writes lost, or users who lost their session."""
    if plan["faults"] in STORE_FAULTS:
        return "; ".join(f"{r['config']['name']}: {r['store']['writes_lost']} of {r['store']['writes_acknowledged']} "
                         "acknowledged session writes lost" for r in results)
    return "; ".join(f"{r['config']['name']}: {r['users_lost_session_pct']:.0f} % of users lost their session"
                     for r in results)


def _page_title(plan):
    return f"What happens to users when {'the store fails' if plan['faults'] in STORE_FAULTS else 'an instance dies'}"


def _title(plan):
    return "Store-failure experiment" if plan["faults"] in STORE_FAULTS else "Kill experiment"


def _plan_line(plan):
    users = f"{plan['users']} users" if plan["users"] else f"users at {plan['load']:.0%} of each capacity step"
    return (f"{users}, {plan['duration']:g} s measured after {plan['warmup']:g} s warm-up (only requests that "
            f"started inside it count), {plan['instances']} instances, fault schedule '{plan['faults']}', "
            f"on {plan['machine']}.")


def _rate(result):
    """The run's request rate, and its share of the rate the capacity step held, if one ran."""
    capacity = result.get("load", {}).get("capacity_rps")
    return f"{result['rps']:g}" + (f" ({result['rps'] / capacity:.0%} of {capacity:g})" if capacity else "")


def _users(load):
    if load.get("fraction"):
        return f"{load['users']} ({load['fraction']:.0%} of {load['capacity_users']})"
    return str(load.get("users", "n/a"))


def _fault_p99(fault):
    if not fault:
        return "n/a"
    return f"{_num(fault['before']['p99_ms'])}/{_num(fault['after']['p99_ms'])}"


def _generator(row):
    if row.get("generator_cpu") is None:
        return "n/a"
    text = f"{row['generator_cpu']:.0%} ({row['generator_processes']} proc.)"
    return text + " SATURATED" if row["generator_saturated"] else text


def _share(value):
    return "n/a" if value is None else f"{value:.0%}"


def _faults_text(faults):
    return ", ".join(f"{f['action']} {f['target']} at {f['at']:g} s" for f in faults) or "none"


def _num(value):
    return "n/a" if value is None else f"{value:g}"


def _busiest(shares):
    if not shares:
        return "n/a"
    name = max(shares, key=shares.get)
    return f"{name} {shares[name]:.0%}"
