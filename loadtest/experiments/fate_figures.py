"""Fate sharing's figures, from the history alone, and its output: the tables, each scenario's chart, the headline."""

from loadtest.experiments import fate_lease as lease
from loadtest.experiments.fate_lease import relative
from loadtest.harness import checkers
from loadtest.reports.svg import marks_chart, series_chart
from loadtest.reports.tables import Table

REPLICAS = ["redis2", "redis3"]
INSTANCES = ["app1", "app2"]
CACHES = {"primary-forever": "forever", "primary-connection": "connection", "primary-500ms": "500"}


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
    unconfirmed = {op["id"] for op in checkers.unconfirmed_writes(counted)}
    total = {"writes_acknowledged": len(acked), "writes_lost": sum(op["id"] in lost for op in acked),
             "writes_unconfirmed": sum(op["id"] in unconfirmed for op in acked)}
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
    return {**result, "primary_cache": CACHES[name], "marks": relative(marks, origin), "windows": windows,
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
    return {"marks": relative(marks, origin),
            "promoted_without_majority": any(end_roles.get(node) == "primary" for node in REPLICAS),
            "while_no_majority": {"acknowledged": sum(op["outcome"] == "ok" for op in writes),
                                  "refused": sum(op["outcome"] == "failed" for op in writes)},
            "answer_without_majority": answer, "timeline": timeline}




def _cell(window):
    return f"{window['lost']} of {window['acknowledged']} ({window['refused']} refused)"


def tables(results):
    """One table (reports/tables.py) per lesson present in results."""
    parts = []
    primary = [r for r in results if r["scenario"].startswith("primary-")]
    if primary:
        parts.append(Table.of(
            ["REDIS_PRIMARY_CACHE", "acked writes lost", "sessions behind after the heal",
             "partitioned, before the promotion: lost of acked", "after the promotion (the wrong node): lost of acked",
             "after the heal: writes acked, refused", "promoted after", "old primary a replica after the heal"],
            [_primary_row(r) for r in primary]))
    for r in results:
        if r["scenario"] == "war":
            marks, no_majority = r["marks"], r["while_no_majority"]
            parts.append(Table.of(
                ["primary dead, no Sentinel majority", "session writes acked", "refused", "promoted without a majority",
                 "promoted after a Sentinel came back", "first acked write after it came back", "acked writes lost",
                 "unconfirmed"],
                [[f"{marks['sentinel back'] - marks['primary killed']:.1f} s", no_majority["acknowledged"],
                  no_majority["refused"], "yes" if r["promoted_without_majority"] else "no",
                  _since(marks, "promoted", "sentinel back"), _since(marks, "first write after", "sentinel back"),
                  f"{r['total']['writes_lost']} of {r['total']['writes_acknowledged']}",
                  r["total"]["writes_unconfirmed"]]]))
        if r["scenario"] == "lease":
            marks, timings = r["marks"], r["timings"]
            parts.append(Table.of(
                ["lease TTL / renew / retry", "holder stopped acting", "holder gave the lease up",
                 "another instance acting", "tokens old → new (database's highest)",
                 "runs with the old token after the takeover"],
                [[f"{timings['ttl']:g} / {timings['renew_every']:g} / {timings['retry']:g} s",
                  _since(marks, "holder stopped acting", "partition"), _since(marks, "holder gave up", "partition"),
                  _since(marks, "other took over", "partition"),
                  f"{r['old_token']} → {r['new_token']} ({r['highest_token_in_database']})",
                  r["runs_with_old_token_after_takeover"]]]))
        if r["scenario"] == "lease-late-write":
            parts.append(_late_write_table(r))
    return parts


def _primary_row(r):
    marks = r["marks"]
    promoted = "never" if marks["promoted"] is None else f"{marks['promoted'] - marks['partition']:.1f} s"
    converged = "never" if marks["converged"] is None else f"{marks['converged'] - marks['heal']:.1f} s"
    return [r["primary_cache"], f"{r['writes_rolled_back']} of {r['total']['writes_acknowledged']}",
            f"{r['sessions_behind_after_heal']} of {len(INSTANCES) * r['users_per_instance']}",
            _cell(r["windows"]["before promotion"]), _cell(r["windows"]["after promotion"]),
            f"{r['windows']['after heal']['acknowledged']}, {r['windows']['after heal']['refused']}", promoted,
            converged]


def _late_write_table(r):
    marks, late = r["marks"], r["late_write"] or {}
    return Table.of(
        ["holder cut, into its job's wait", "another instance acting", "it wrote with token", "healed",
         "late write arrived (after the heal)", "late write's token", "highest token when it arrived", "refused",
         "runs with the old token after the takeover"],
        [[f"{r['holder_at_cut']['working_for']:.2f} s", _since(marks, "other took over", "cut"),
          f"{r['new_token']} ({_since(marks, 'other wrote', 'cut')})", _since(marks, "heal", "cut"),
          f"{_since(marks, 'late write refused', 'cut')} ({_since(marks, 'late write refused', 'heal')})",
          late.get("token", "none"), late.get("highest_when_it_arrived", "-"), "yes" if r["refused"] else "NO",
          r["runs_with_old_token_after_takeover"]]])


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
    start, end, label = ("sentinels killed", "sentinel back", "no Sentinel majority") if result["scenario"] == "war" \
        else ("partition", "heal", "partition")
    bands = [(marks[start], marks.get(end), label)] if marks.get(start) is not None else []
    return series_chart(f"{result['scenario']}: session writes per second", list(range(len(series["answered 503"]))),
                        series, x_label="seconds since the start", unit="/s", width=640, legend_columns=3, bands=bands,
                        markers=[(t, name) for name, t in marks.items() if t is not None])
