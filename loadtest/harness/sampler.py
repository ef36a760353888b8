"""Once a second during a run: HAProxy's queues, the load generator's CPU, the machine's.

HAProxy is read through deploy's public API (the cluster's runtime socket):
`qcur` is requests waiting in HAProxy for a server slot (maxconn), `scur`
the requests a server is working on. The generator's CPU is read for the
Locust process and every process it started (`--processes`), so a run can
tell a saturated generator from a slow site. psutil comes with Locust.
"""

import threading
import time

import psutil

from deploy import cluster as deploy


class Sampler:
    def __init__(self, state_dir, locust_pid, every=1.0):
        self.state_dir = state_dir
        self.locust = psutil.Process(locust_pid)
        self.every = every
        self.samples = []  # {"t", "queued", "current", "servers", "generator_cpu": {pid: s}, "machine_busy"}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loadtest-sampler", daemon=True)

    def __enter__(self):
        psutil.cpu_percent()  # the first call only sets the baseline
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self):
        while not self._stop.wait(self.every - time.time() % self.every):
            self.samples.append({"t": time.time(), **self._haproxy(), "generator_cpu": self._generator_cpu(),
                                 "machine_busy": round(psutil.cpu_percent() / 100, 3)})

    def _haproxy(self):
        cluster = deploy.load(self.state_dir)
        try:
            rows = cluster.runtime.stats() if cluster else {}
        except OSError:  # HAProxy is going down with the cluster
            rows = {}
        servers = {name: {"qcur": _int(row.get("qcur")), "scur": _int(row.get("scur"))} for name, row in rows.items()}
        return {"queued": sum(s["qcur"] for s in servers.values()),
                "current": sum(s["scur"] for s in servers.values()), "servers": servers}

    def _generator_cpu(self):
        """Seconds of CPU each Locust process has used so far, by pid."""
        cpu = {}
        try:
            processes = [self.locust, *self.locust.children(recursive=True)]
        except psutil.Error:
            return cpu
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:
                continue
            cpu[str(process.pid)] = round(times.user + times.system, 3)
        return cpu


def _int(text):
    return int(text) if text not in (None, "") else 0
