"""What a run observes of its cluster, as one sample of its history: roles, HAProxy's view, CPU.

CPU is two cumulative counters in seconds, so that a reader takes the
difference between two samples: `lab` for the cluster's processes (every
store node, instance and HAProxy, with their children) and `machine` for
every process on the machine; the rest of the machine is the difference.
psutil comes with Locust.
"""

import psutil

from deploy import cluster


def observe(state_dir, history, **more):
    """Sample the cluster in state_dir into the history (with `more`); return each store node's role."""
    status = cluster.status(state_dir=state_dir)
    roles = {row["name"]: row["role"] for row in status["stores"]}
    haproxy = {row["name"]: row["lb_state"] for row in status["instances"]}
    pids = [row["pid"] for row in [*status["stores"], *status["instances"], status["haproxy"]] if row.get("pid")]
    history.sample(roles=roles, haproxy=haproxy, cpu={"lab": _cpu_seconds(pids), "machine": _machine_seconds()},
                   **more)
    return roles


def _cpu_seconds(pids):
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            total += times.user + times.system
    return round(total, 3)


def _machine_seconds():
    times = psutil.cpu_times()
    return round(times.user + times.nice + times.system + getattr(times, "irq", 0) + getattr(times, "softirq", 0), 3)
