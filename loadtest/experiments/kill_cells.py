"""The kill experiment's tables: their columns, each a header and a cell from a configuration's figures."""




COLUMNS = [
    ("configuration", lambda r: r["config"]["name"]),
    ("users", lambda r: users_cell(r["load"])),
    ("users lost session", lambda r: f"{r['users_lost_session_pct']:.0f}% ({r['users_lost_session']}/{r['users']})"),
    ("sessions lost", lambda r: str(r["sessions_lost"])),
    ("failed requests", lambda r: f"{r['failed_pct']:.2f}% ({r['failures']})"),
    ("req/s", lambda r: rate_cell(r)),
    ("p50 ms", lambda r: num(r["p50_ms"])),
    ("p99 ms", lambda r: num(r["p99_ms"])),
    ("messages acked/lost/dup",
     lambda r: f"{r['messages_acknowledged']}/{r['messages_lost']}/{r['messages_duplicated']}"),
    ("polls missed/twice",
     lambda r: f"{r['messages_missed_by_pollers']}/{r['messages_seen_twice_by_pollers']}"),
    ("presence accuracy", lambda r: "n/a" if r["presence_accuracy"] is None else f"{r['presence_accuracy']:.0%}"),
    ("busiest instance", lambda r: busiest_cell(r["served_share"])),
    ("p99 ms before/after fault", lambda r: fault_p99_cell(r["fault"])),
    ("peak queued in HAProxy", lambda r: num(r["queued_peak"])),
    ("generator CPU", lambda r: generator_cell(r)),
]


# The store-fault experiments' table: what the store's failure cost users.
STORE_COLUMNS = [
    ("configuration", lambda r: r["config"]["name"]),
    ("faults", lambda r: faults_text(r["faults"])),
    ("users", lambda r: users_cell(r["load"])),
    ("users lost session", lambda r: f"{r['users_lost_session_pct']:.0f}% ({r['users_lost_session']}/{r['users']})"),
    ("acked session writes lost", lambda r: f"{r['store']['writes_lost']} of {r['store']['writes_acknowledged']}"),
    ("acked logins lost", lambda r: f"{r['store']['logins_lost']} of {r['store']['logins_acknowledged']}"),
    ("failed requests", lambda r: f"{r['failed_pct']:.2f}% ({r['failures']})"),
    ("failover s", lambda r: num(r["store"]["failover_s"])),
    ("longest request ms", lambda r: num(r["longest_ms"])),
    ("p50/p99 ms", lambda r: f"{num(r['p50_ms'])}/{num(r['p99_ms'])}"),
    ("messages acked/lost/dup",
     lambda r: f"{r['messages_acknowledged']}/{r['messages_lost']}/{r['messages_duplicated']}"),
    ("polls missed/twice",
     lambda r: f"{r['messages_missed_by_pollers']}/{r['messages_seen_twice_by_pollers']}"),
]


def columns_for(results):
    return STORE_COLUMNS if any(r.get("store") for r in results) else COLUMNS


def rate_cell(result):
    """The run's request rate, and its share of the rate the capacity step held, if one ran."""
    capacity = result.get("load", {}).get("capacity_rps")
    return f"{result['rps']:g}" + (f" ({result['rps'] / capacity:.0%} of {capacity:g})" if capacity else "")


def users_cell(load):
    if load.get("fraction"):
        return f"{load['users']} ({load['fraction']:.0%} of {load['capacity_users']})"
    return str(load.get("users", "n/a"))


def fault_p99_cell(fault):
    if not fault:
        return "n/a"
    return f"{num(fault['before']['p99_ms'])}/{num(fault['after']['p99_ms'])}"


def generator_cell(row):
    if row.get("generator_cpu") is None:
        return "n/a"
    text = f"{row['generator_cpu']:.0%} ({row['generator_processes']} proc.)"
    return text + " SATURATED" if row["generator_saturated"] else text


def share_cell(value):
    return "n/a" if value is None else f"{value:.0%}"


def faults_text(faults):
    return ", ".join(f"{f['action']} {f['target']} at {f['at']:g} s" for f in faults) or "none"


def num(value):
    return "n/a" if value is None else f"{value:g}"


def busiest_cell(shares):
    if not shares:
        return "n/a"
    name = max(shares, key=shares.get)
    return f"{name} {shares[name]:.0%}"
