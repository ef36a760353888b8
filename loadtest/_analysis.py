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


def summarise(raw):
    """Return the figures of one configuration's run.

    Request figures cover the measured window (after the warm-up); message
    figures cover the whole run, since every acknowledged message counts.
    """
    recording, start, duration = raw["recording"], raw["window_start"], raw["duration"]
    first = int(start - raw["warmup"])
    timeline = {"t": [], "requests": [], "failures": [], "sessions_lost": [], "p95_ms": [], "accuracy": []}
    latencies, accuracy, served = [], [], {}
    requests = failures = sessions_lost = 0
    for t in range(first, int(start + duration) + 1):
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
    lost_users = [u for u, times in recording["lost_by_user"].items() if any(t >= start for t in times)]
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
    }


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
