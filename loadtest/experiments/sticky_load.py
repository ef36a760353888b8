"""Sticky sessions' costs, the parts under Locust: load skew through a kill, and fair share after a scale-out.

Each part runs once behind each load balancing, a scenario of the run's
history each ("skew, sticky", "fair share, roundrobin"). Locust's users
run in processes of their own and record what they saw second by second
(harness/recorder.py), not request by request: so what a part's figures
read of them (the requests each instance served, each second of the
measured window, and the failures) is kept in the history as one sample
of the scenario, beside its faults: the kill experiment's kill and start
of app1 as it ran them (their second into the window and how long each
took to hold; their own events are in raw/<config>.history.jsonl), and
the scale-out as a fault event of this history, sent through the nemesis.
skew_row and share_row compute the figures from those samples alone.
"""

import math
import os
import statistics
import time

from deploy import cluster as deploy
from loadtest.experiments import configs as experiment
from loadtest.experiments import kill_run
from loadtest.harness import locust as driver
from loadtest.harness.checkers import faults
from loadtest.harness.nemesis import Nemesis

LBS = ("roundrobin", "sticky")
FAIR = 0.9  # of the fair share 1/N
SMOOTH = 5  # seconds in the sliding window of the new instance's share
NAMES = ("app1", "app2", "app3")


def coefficient_of_variation(counts):
    counts = list(counts)
    if len(counts) < 2 or not sum(counts):
        return None
    return round(statistics.pstdev(counts) / statistics.mean(counts), 3)


def served_by(seconds, first, last, names):
    """Requests each instance served among those that started in seconds [first, last)."""
    totals = dict.fromkeys(names, 0)
    for t in range(first, last):
        for name, count in seconds.get(str(t), {}).get("served", {}).items():
            if name in totals:
                totals[name] += count
    return totals


def skew(*, users, duration, warmup, port, out, progress, history):
    """The kill experiment behind each load balancing, into the history: what skew_row reads, per scenario."""
    for lb in LBS:
        history.scenario = f"skew, {lb}"
        config = experiment.parse_config(f"redis+{lb}")
        plan = kill_run.Plan([config], users, duration, warmup, "kill", 3, port, out)
        raw = kill_run.run_config(plan, config, 0, lambda index, config, what: progress(f"skew, {lb}: {what}"))
        start = raw["window_start"]
        history.sample(skew={
            "lb": lb, "users": users, "duration": duration, "window_start": start, "faults": raw["faults"],
            "seconds": {t: {"served": s["served"], "failures": s["failures"]}
                        for t, s in raw["recording"]["seconds"].items() if start <= int(t) < start + duration}})


def skew_row(observed):
    """The CV of per-instance requests, whole and by phases, from a skew scenario's sample."""
    seconds, start, duration = observed["seconds"], observed["window_start"], observed["duration"]
    kill, restart = observed["faults"]
    # From the second after the kill to the restart; from the second after app1 was back in HAProxy.
    phases = {"whole": (0, round(duration)), "before the kill": (0, math.floor(kill["at"])),
              "app1 dead": (math.ceil(kill["at"] + kill["took"]), math.floor(restart["at"])),
              "after the restart": (math.ceil(restart["at"] + restart["took"]), round(duration))}
    row = {"lb": observed["lb"], "users": observed["users"]}
    for phase, (a, b) in phases.items():
        counts = served_by(seconds, start + a, start + b, NAMES)
        alive = counts if phase != "app1 dead" else {n: c for n, c in counts.items() if n != "app1"}
        row[phase] = {"served": counts, "cv": coefficient_of_variation(alive.values())}
    row["failed"] = sum(s["failures"] for t, s in seconds.items() if start <= int(t) < start + duration)
    return row


def fair_share(*, users, stay, warmup, after, instances, port, out, progress, history):
    """Scale out by one under a turning-over population, into the history: what share_row reads, per scenario."""
    for lb in LBS:
        history.scenario = f"fair share, {lb}"
        state_dir = out / "cluster"
        recording = out / "raw" / f"fair-share-{lb}"
        cluster = deploy.up(instances=instances, sessions="redis", presence="redis", lb=lb, port=port,
                            env=experiment.SITE_ENV, state_dir=state_dir)
        try:
            os.environ["LOADTEST_STAY"] = f"{stay[0]:g},{stay[1]:g}"
            try:
                locust = driver.start_locust(users=users, run_time=warmup + after + driver.TAIL,
                                             ramp=min(10.0, warmup / 2), url=cluster.url, state_dir=state_dir,
                                             recording=recording)
            finally:
                del os.environ["LOADTEST_STAY"]
            try:
                _sleep_until(time.time() + warmup, locust, lambda left: progress(
                    f"fair share, {lb}: warm-up, {left:.0f} s to the scale-out"))
                if Nemesis(history, state_dir=state_dir).act("scale", fields={"count": instances + 1})["effect"] \
                        is None:
                    raise RuntimeError(f"fair share, {lb}: the scale-out to {instances + 1} instances did not hold")
                scaled_at = time.time()  # the new instance is UP in HAProxy
                _sleep_until(scaled_at + after, locust, lambda left: progress(
                    f"fair share, {lb}: {left:.0f} s left after the scale-out"))
            finally:
                driver.wait_locust(locust, driver.TAIL + driver.STOP_TIMEOUT + 60)
            seconds = driver.read_recording(recording, locust.recordings)["seconds"]
        finally:
            deploy.down(state_dir)
        first = math.ceil(scaled_at)
        history.sample(fair_share={
            "lb": lb, "users": users, "stay": list(stay), "instances": instances + 1, "after": after,
            "scaled_at": scaled_at, "seconds": {str(t): {"served": seconds.get(str(t), {}).get("served", {})}
                                                for t in range(first, first + int(after))}})


def share_row(events):
    """A fair share scenario's row, from its events: its sample, and the scale-out's fault."""
    observed = next(e["fair_share"] for e in events if e["type"] == "sample" and "fair_share" in e)
    (scale,) = faults(events, "scale")
    return {"lb": observed["lb"], **share_after(observed["seconds"], observed["scaled_at"], observed["after"],
                                                observed["instances"]),
            "scale_out_s": round(scale["effect"] - scale["sent"], 1), "users": observed["users"],
            "stay": observed["stay"]}


def share_after(seconds, scaled_at, after, count):
    """The new instance's share, second by second after the scale-out, and when it reached FAIR of 1/count."""
    new = f"app{count}"
    first = math.ceil(scaled_at)
    shares = []
    for t in range(first, first + int(after)):
        served = seconds.get(str(t), {}).get("served", {})
        total = sum(served.values())
        shares.append(round(served.get(new, 0) / total, 3) if total else None)
    reached = None
    for i in range(len(shares) - SMOOTH + 1):
        window = [s for s in shares[i:i + SMOOTH] if s is not None]
        if window and statistics.mean(window) >= FAIR / count:
            reached = i + SMOOTH
            break
    last = [s for s in shares[-10:] if s is not None]
    return {"fair_share": round(1 / count, 3), "seconds_to_fair_share": reached, "shares": shares,
            "share_last_10s": round(statistics.mean(last), 3) if last else None}


def _sleep_until(moment, locust, report):
    while (left := moment - time.time()) > 0:
        if locust.poll() is not None:
            raise RuntimeError(f"Locust exited early with code {locust.returncode}")
        report(left)
        time.sleep(min(left, 1.0))
