"""bench-sockets' figures, from what a run read: pure functions, tested on hand-made inputs.

Each is computed from the readings alone (sockets_runs.py: times on one
monotonic clock, resident memory in KiB, CPU seconds), so that what a
figure means is here and nowhere else:

- memory per socket: (the instance's resident memory with every idle socket
  open, less with one open) over the sockets opened in between;
- delivery latency: for each (message, receiver), the receiver's arrival
  time less the poster's send time; a pair never received is missing, not
  slow, and counts in no percentile;
- CPU per delivery: the instances' CPU seconds over the window, over the
  deliveries received in it, in microseconds;
- over rounds: each figure's median with its range (min and max), as every
  benchmark gives it (loadtest/bench/wrk.py's `spread`).
"""

from collections import Counter

from loadtest.bench.wrk import spread as median_and_range
from loadtest.harness.analysis import percentile

# Counts by name (instance, refusal, close code), kept round by round: a median over rounds where a name is
# absent from some would mean nothing.
BY_NAME = ("spread", "refused", "closed_while_held")


def idle_figures(readings):
    """An idle round's figures from its readings: held is what opened less what closed while held."""
    opened, before, after = readings["opened"], readings["rss_before_kib"], readings["rss_after_kib"]
    return {"asked": readings["asked"], "opened": opened,
            "held": opened - sum(readings["closed_while_held"].values()), "refused": readings["refused"],
            "closed_while_held": readings["closed_while_held"], "server_sockets": readings["server_sockets"],
            "rss_before_kib": before, "rss_after_kib": after,
            "memory_per_socket_kib": memory_per_socket_kib(before, after, opened),
            "open_seconds": round(readings["open_seconds"], 2)}


def fanout_figures(readings, *, users, messages):
    """A fan-out round's figures from its readings: push's deliveries, latency, spread and CPU, then poll's under
    "poll", and poll's CPU per delivery over push's. A receiver refused misses every message: it counts, never
    vanishes."""
    push, poll = readings["push"], readings["poll"]
    never = [[None] * len(push["sent"])] * sum(push["refused"].values())
    delivered = deliveries(*_keyed(push["sent"], push["arrivals"] + never))
    pushed = {"users": users, "messages": messages, "spread": spread(push["nodes"]),
              "instances_holding": len(set(push["nodes"])), "refused": push["refused"], **delivered,
              "duplicates": push["duplicates"],
              "cpu_us_per_delivery": cpu_us_per_delivery(push["cpu_seconds"], delivered["received"])}
    delivered = deliveries(*_keyed(poll["sent"], poll["arrivals"]))
    polled = {**delivered, "polls": poll["polls"], "failed_polls": poll["failed_polls"],
              "cpu_us_per_delivery": cpu_us_per_delivery(poll["cpu_seconds"], delivered["received"])}
    return {**pushed, "poll": polled,
            "poll_to_push_cpu": ratio(polled["cpu_us_per_delivery"], pushed["cpu_us_per_delivery"])}


def _keyed(sent, arrivals):
    """Send times in post order and per-receiver arrival lists (None: never) as deliveries() takes them."""
    return dict(enumerate(sent)), [{n: at for n, at in enumerate(row) if at is not None} for row in arrivals]


def memory_per_socket_kib(before_kib, after_kib, opened):
    """KiB of the instance's resident memory per socket opened; None when none opened."""
    return round((after_kib - before_kib) / opened, 2) if opened else None


def latencies_ms(sent, arrivals):
    """Every (message, receiver) latency in ms: `sent` {client_id: send time}, `arrivals` one {client_id: time} each."""
    return [(mine[client_id] - at) * 1000 for mine in arrivals for client_id, at in sent.items() if client_id in mine]


def deliveries(sent, arrivals):
    """Deliveries expected (messages x receivers), received, missing, and the latency's p50 / p99 / max in ms."""
    latencies = latencies_ms(sent, arrivals)
    expected = len(sent) * len(arrivals)
    return {"expected": expected, "received": len(latencies), "missing": expected - len(latencies),
            **{name: _ms(percentile(latencies, fraction)) for name, fraction in (("p50_ms", 0.5), ("p99_ms", 0.99))},
            "max_ms": _ms(max(latencies, default=None)), "min_ms": _ms(min(latencies, default=None))}


def spread(nodes):
    """{instance: sockets it holds}, from each socket's hello, in the instances' order."""
    return dict(sorted(Counter(nodes).items()))


def cpu_us_per_delivery(cpu_seconds, delivered):
    """The instances' CPU microseconds over the window per delivery received; None when none was."""
    return round(cpu_seconds / delivered * 1e6, 1) if delivered else None


def ratio(numerator, denominator):
    """numerator / denominator to two decimals; None when either is missing or the denominator is 0."""
    return round(numerator / denominator, 2) if numerator is not None and denominator else None


def over_rounds(rounds):
    """The rounds' figures, nested as they are, each number replaced by {"min", "median", "max"} over the rounds.

    A number missing from a round (None) counts in no spread, and one missing
    from every round is None; counts by name (BY_NAME) and flags stay with
    the rounds. With an even number of rounds the median is the upper of the
    middle two, as in every benchmark's spread.
    """
    summary = {}
    for name in dict.fromkeys(name for figures in rounds for name in figures):
        values = [figures.get(name) for figures in rounds]
        found = [value for value in values if value is not None]
        if any(isinstance(value, dict) for value in found):
            if name not in BY_NAME:
                summary[name] = over_rounds(found)
        elif all(isinstance(value, int | float) and not isinstance(value, bool) for value in found):
            summary[name] = median_and_range(found) if found else None
    return summary


def _ms(value):
    return None if value is None else round(value, 2)
