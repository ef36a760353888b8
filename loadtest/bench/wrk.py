"""What every wrk benchmark shares: its environment, the scripts, the bench user's login, one wrk run, medians.

wrk is the load generator (C, so it leaves the cores to the site) and its
CPU is reported; a figure is the median of alternating rounds, a ratio the
median and range of the rounds' ratios (`spread`).
"""

import os
import re
import resource
import subprocess
from pathlib import Path

import psutil

from deploy.cluster import (
    DeployError,
)
from loadtest.harness.accounts import PASSWORD
from loadtest.harness.site import Site, messages_path, new_message

ROOT = Path(__file__).resolve().parents[2]


BENCH_ENV = {"PASSWORD_ITERATIONS": "1000", "MAINTENANCE": "0", "IDLE_TIMEOUT": "0"}


# DURABLE=0 (read as settings.py reads it) measures without fsync: PostgreSQL
# with fsync=off, SQLite synchronous=NORMAL. Every output says which.
DURABLE = os.environ.get("DURABLE", "1").strip().lower() in {"1", "true", "yes", "on"}

# The benchmarks' clusters run without latency relays (deploy up --no-relays): a relay is a Python
# process relaying every connection to a node, whose CPU and added latency no real deployment pays,
# and what they measure is the site's own cost. (Experiments that add latency or stalls keep them.)
RELAYS = False


def durability():
    """One line for a benchmark's output: were commits on disk when acknowledged?"""
    if DURABLE:
        return "durable: yes (PostgreSQL fsync on, SQLite synchronous=FULL)"
    return "durable: NO (DURABLE=0: PostgreSQL fsync=off, SQLite synchronous=NORMAL)"




POLL_MIX = """
local cookie, csrf = os.getenv("BENCH_COOKIE"), os.getenv("BENCH_CSRF")
local i = 0
request = function()
  i = i + 1
  local step = i % 3
  if step == 0 then
    return wrk.format("GET", "/api/rooms/bench/messages?after=" .. os.getenv("BENCH_AFTER"), {Cookie = cookie})
  elseif step == 1 then
    return wrk.format("POST", "/api/rooms/bench/presence", {Cookie = cookie, ["X-CSRFToken"] = csrf})
  end
  return wrk.format("GET", "/api/me", {Cookie = cookie})
end
"""


LOGIN = """
local csrf = os.getenv("BENCH_CSRF")
wrk.method = "POST"
wrk.headers["Cookie"] = "csrftoken=" .. csrf
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "username=bench&password=""" + PASSWORD + """&csrfmiddlewaretoken=" .. csrf
wrk.path = "/accounts/login/"
"""


def log_in(url):
    """Sign up the bench user, post 20 messages, and return the cookies and the cursor wrk needs.

    The cursor is the last message's id, so every poll of the mix finds
    nothing new, as most of a chat page's polls do.
    """
    visitor = Site(url)
    visitor.sign_up("bench").raise_for_status()
    for n in range(20):
        answer = visitor.api("POST", messages_path("bench"),
                             **new_message(f"message {n}", f"00000000-0000-4000-8000-{n:012d}"))
        answer.raise_for_status()
        last = answer.json()["id"]
    return {"BENCH_COOKIE": visitor.cookie_header(), "BENCH_CSRF": visitor.csrf, "BENCH_AFTER": str(last)}


def run_wrk(url, script, env, seconds, connections, server_pid=None):
    """One wrk run; with server_pid, also the CPU the server (that process and its children) spent per request.

    CPU per request is the steadier figure on a shared machine: other work
    takes the server's turns, and so its requests a second, but it does
    not make a request cost more instructions.
    """
    server = _cpu_seconds(server_pid) if server_pid else None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), url],
        capture_output=True, text=True, env={**os.environ, **env}, timeout=seconds + 60,
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise DeployError(f"wrk failed: {done.stderr.strip()}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    figures = {**_parse_wrk(done.stdout), "generator_cpu": round(cpu / seconds, 3)}
    if server_pid:
        requests = figures["rps"] * seconds
        figures["server_us"] = round((_cpu_seconds(server_pid) - server) / requests * 1e6, 1) if requests else None
    return figures


def _cpu_seconds(pid):
    """CPU seconds spent so far by a process and its live children (a gunicorn master and its worker)."""
    process = psutil.Process(pid)
    total = 0.0
    for each in (process, *process.children(recursive=True)):
        times = each.cpu_times()
        total += times.user + times.system
    return total


def _parse_wrk(text):
    def ms(label):
        match = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", text, re.M)
        value, unit = float(match[1]), match[2]
        return round(value / 1000 if unit == "us" else value * 1000 if unit == "s" else value, 3)

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text)[1]),
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "bad_responses": int(errors[1]) if errors else 0,
    }


def median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def spread(values):
    ordered = sorted(values)
    return {"min": round(ordered[0], 3), "median": round(median(ordered), 3), "max": round(ordered[-1], 3)}
