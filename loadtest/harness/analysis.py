"""Turn a run's raw recording into the figures the report shows."""

import math

from labcore import registry


def percentile(values, fraction):
    """The nearest-rank percentile of values (None if there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


FAULT_SPAN = 10  # seconds before and after a fault whose latency is compared
# Failed requests whose starts are at most this far apart are one outage: at
# dozens of requests a second, a second without a failure means they succeed.
OUTAGE_GAP = 1.0
SATURATED = 0.8  # of a core: a generator process this busy may be what limits the run


def merge(recordings):
    """One recording out of each Locust process's own (their users and requests never overlap)."""
    merged = {"seconds": {}, "acknowledged": [], "lost_by_user": {}, "users": [], "failure_kinds": {},
              "pollers": {}, "steps": [], "sessions": [], "session_counts": {}, "failed_spans": []}
    for recording in recordings:
        for t, second in recording["seconds"].items():
            into = merged["seconds"].setdefault(t, {"requests": 0, "failures": 0, "latencies": [],
                                                    "sessions_lost": 0, "accuracy": [], "served": {}})
            for key in ("requests", "failures", "sessions_lost"):
                into[key] += second[key]
            into["latencies"].extend(second["latencies"])
            into["accuracy"].extend(second["accuracy"])
            for name, count in second["served"].items():
                into["served"][name] = into["served"].get(name, 0) + count
        merged["acknowledged"].extend(recording["acknowledged"])
        merged["lost_by_user"].update(recording["lost_by_user"])
        merged["users"].extend(recording["users"])
        for kind, count in recording["failure_kinds"].items():
            merged["failure_kinds"][kind] = merged["failure_kinds"].get(kind, 0) + count
        merged["pollers"].update(recording["pollers"])
        merged["steps"].extend(recording.get("steps", []))
        merged["sessions"].extend(recording.get("sessions", []))
        for key, count in recording.get("session_counts", {}).items():
            merged["session_counts"][key] = merged["session_counts"].get(key, 0) + count
        merged["failed_spans"].extend(recording.get("failed_spans", []))
    merged["users"].sort()
    merged["steps"].sort()
    merged["failed_spans"].sort()
    return merged


def window_figures(seconds, first, last):
    """Requests, failures and latency percentiles of the requests that started in seconds [first, last)."""
    latencies, requests, failures = [], 0, 0
    for t in range(first, last):
        second = seconds.get(str(t))
        if second:
            requests += second["requests"]
            failures += second["failures"]
            latencies.extend(second["latencies"])
    span = max(1, last - first)
    return {"requests": requests, "failures": failures, "failed_pct": _pct(failures, requests),
            "rps": round(requests / span, 1), "p50_ms": _round(percentile(latencies, 0.50)),
            "p99_ms": _round(percentile(latencies, 0.99))}


def machine_figures(samples, first, last):
    """From the sampler: the peak HAProxy queue, the generator's CPU per process, the machine's CPU."""
    inside = [s for s in samples if first <= s["t"] < last]
    if len(inside) < 2:
        return {"queued_peak": None, "current_peak": None, "generator_cpu": None, "generator_processes": 0,
                "generator_saturated": False, "machine_busy": None}
    span = inside[-1]["t"] - inside[0]["t"]
    cpu = [(inside[-1]["generator_cpu"][pid] - seconds) / span
           for pid, seconds in inside[0]["generator_cpu"].items() if pid in inside[-1]["generator_cpu"]]
    # A master that only coordinates workers barely uses CPU; the busiest process is the one that limits.
    busiest = max(cpu, default=None)
    return {
        "queued_peak": max(s["queued"] for s in inside),
        "current_peak": max(s["current"] for s in inside),
        "generator_cpu": _round(busiest, 2),
        "generator_processes": len(cpu),
        "generator_saturated": busiest is not None and busiest > SATURATED,
        "machine_busy": _round(_mean([s["machine_busy"] for s in inside]), 2),
    }


def fault_figures(seconds, start, faults):
    """Latency and failures in the FAULT_SPAN seconds before and after the first fault."""
    if not faults:
        return None
    at = int(start + faults[0]["at"])
    return {"action": faults[0]["action"], "target": faults[0]["target"], "span": FAULT_SPAN,
            "before": window_figures(seconds, at - FAULT_SPAN, at),
            "after": window_figures(seconds, at, at + FAULT_SPAN)}


def summarise(raw):
    """Return the figures of one configuration's run.

    Request figures cover the requests that started inside the measured
    window (after the warm-up, before the harness stops the load); message
    figures cover the whole run, since every acknowledged message counts.
    """
    recording, start, duration = raw["recording"], int(raw["window_start"]), int(raw["duration"])
    first = int(start - raw["warmup"])
    timeline = {"t": [], "requests": [], "failures": [], "sessions_lost": [], "p95_ms": [], "accuracy": []}
    latencies, accuracy, served = [], [], {}
    requests = failures = sessions_lost = 0
    for t in range(first, start + duration):
        second = recording["seconds"].get(str(t))
        timeline["t"].append(t - int(start))
        if second is None:
            for key in ("requests", "failures", "sessions_lost"):
                timeline[key].append(0)
            timeline["p95_ms"].append(None)
            timeline["accuracy"].append(None)
            continue
        timeline["requests"].append(second["requests"])
        timeline["failures"].append(second["failures"])
        timeline["sessions_lost"].append(second["sessions_lost"])
        timeline["p95_ms"].append(percentile(second["latencies"], 0.95))
        timeline["accuracy"].append(_mean(second["accuracy"]))
        if t >= start:
            requests += second["requests"]
            failures += second["failures"]
            sessions_lost += second["sessions_lost"]
            latencies.extend(second["latencies"])
            accuracy.extend(second["accuracy"])
            for name, count in second["served"].items():
                served[name] = served.get(name, 0) + count

    users = recording["users"]
    lost_users = {u for u, times in recording["lost_by_user"].items()
                  if any(start <= t < start + duration for t in times)}
    store = store_figures(raw, start, duration)
    if store:
        lost_users |= set(raw["sessions"]["users_gone"])
    total_served = sum(served.values()) or 1
    audit = raw["audit"]
    return {
        "config": raw["config"],
        "faults": raw["faults"],
        "users": len(users),
        "users_lost_session": len(lost_users),
        "users_lost_session_pct": _pct(len(lost_users), len(users)),
        "sessions_lost": sessions_lost,
        "requests": requests,
        "failures": failures,
        "failed_pct": _pct(failures, requests),
        "failure_kinds": recording["failure_kinds"],
        "rps": round(requests / duration, 1),
        "p50_ms": _round(percentile(latencies, 0.50)),
        "p95_ms": _round(percentile(latencies, 0.95)),
        "p99_ms": _round(percentile(latencies, 0.99)),
        "longest_ms": _round(max(latencies, default=None)),
        "presence_accuracy": _round(_mean(accuracy), 3),
        "served_share": {name: round(count / total_served, 3) for name, count in sorted(served.items())},
        "messages_acknowledged": audit["acknowledged"],
        "messages_lost": audit["lost"],
        "messages_duplicated": audit["duplicated"],
        "pollers_audited": audit["pollers"]["users"],
        "messages_missed_by_pollers": audit["pollers"]["missed"],
        "messages_seen_twice_by_pollers": audit["pollers"]["seen_twice"],
        "audit": audit,
        "timeline": timeline,
        "fault": fault_figures(recording["seconds"], start, raw["faults"]),
        "load": raw.get("load", {}),
        "store": store,
        **machine_figures(raw.get("samples", []), start, start + duration),
    }


def store_figures(raw, start, duration):
    """What a store fault cost (None for an instance fault): sessions, logins, the outage.

    Writes and logins lost count both what users found lost during the run
    and what the read-back after it found (loadtest/harness/sessions.py).
    """
    back = raw.get("sessions")
    if back is None:
        return None
    counts, faults = raw["recording"]["session_counts"], raw["faults"]
    at = start + faults[0]["at"] if faults else None
    return {
        "writes_acknowledged": counts.get("writes_acknowledged", 0),
        "writes_lost": counts.get("writes_lost", 0) + back["writes_lost"],
        "writes_lost_at_end": back["writes_lost"],
        "rollbacks": counts.get("rollbacks", 0) + len(back["rolled_back"]),
        "logins_acknowledged": counts.get("logins_acknowledged", 0),
        "logins_lost": counts.get("logins_lost", 0) + back["logins_lost"],
        "sessions_gone_at_end": len(back["users_gone"]),
        "users_gone_at_end": len(set(back["users_gone"])),
        "sessions_read": back["sessions_read"],
        "unreadable": back["unreadable"],
        "failover_s": None if at is None else outage_seconds(raw["recording"]["failed_spans"], at,
                                                             start + duration),
    }


def outage_seconds(spans, at, until):
    """Seconds from a fault at `at` until requests stopped failing (0 if none failed at it).

    spans: (start, end) of the failed requests. The outage is the run of
    failures that begins within OUTAGE_GAP of the fault (requests in
    flight at it count), each starting within OUTAGE_GAP of the last; it
    ends when the last of them ended.
    """
    end = at
    for begun, ended in sorted(spans):
        if ended < at or begun >= until:
            continue
        if begun > end + OUTAGE_GAP:
            break
        end = max(end, ended)
    return round(end - at, 2)


def headline_failures(results):
    """Check the lab's headline results; return what does not hold (empty if all do)."""
    problems = []
    for result in results:
        name = result["config"]["name"]
        lost = result["users_lost_session"]
        if registry.SESSION_STORES[result["config"]["sessions"]].survives_instance_death:
            if lost:
                problems.append(f"{name} lost {lost} users' sessions, though its store outlives the instance")
        elif not lost:
            problems.append(f"{name} lost no session, though its sessions die with the instance")
        if result["messages_lost"] or result["messages_duplicated"]:
            problems.append(f"{name}: {result['messages_lost']} acknowledged messages lost, "
                            f"{result['messages_duplicated']} duplicated")
        if result["messages_missed_by_pollers"] or result["messages_seen_twice_by_pollers"]:
            problems.append(f"{name}: pollers missed {result['messages_missed_by_pollers']} messages and saw "
                            f"{result['messages_seen_twice_by_pollers']} twice")
        if not result["pollers_audited"]:
            problems.append(f"{name}: no user followed a room with a cursor, so the pollers' audit proves nothing")
        if not result["messages_acknowledged"]:
            problems.append(f"{name}: no message was acknowledged, so the audit proves nothing")
    return problems


def _mean(values):
    return sum(values) / len(values) if values else None


def _pct(part, whole):
    return round(100 * part / whole, 2) if whole else 0.0


def _round(value, digits=1):
    return None if value is None else round(value, digits)
