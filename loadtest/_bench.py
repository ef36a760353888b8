"""Benchmarks: what each store costs per request, measured side by side.

`bench`: the site through HAProxy, one cluster per session store (one
instance each, so the store's cost is not hidden behind spare cores), with
Django's stock engines and each store's floor beside them
(loadtest/_bench_cost.py), all up
at once and measured in alternating rounds so machine drift cancels; wrk is
the load generator (C, so it leaves the cores to the site) and its CPU is
reported. `bench-sessions` and `bench-presence`: the session layer and the
presence stores alone, in a fresh process per store. `bench-posts`: what a
post costs on each database, with and without the room lock.
"""

import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from contextlib import contextmanager
from http.cookiejar import CookieJar
from pathlib import Path

import psutil

from deploy import cluster as deploy
from deploy.cluster import (
    BLOCK,
    DeployError,
    free_base_port,
    free_port,
    require,
    running,
    server_settings,
    servers,
    spawn,
    start_server,
    stop,
    stop_server,
    wait_for,
    web,
)
from labcore import registry
from loadtest import _bench_cost

ROOT = Path(__file__).resolve().parent.parent
# Every store whose servers deploy can start; memory first, the base of the ratios.
SESSION_STORES = [name for name, row in registry.SESSION_STORES.items() if set(row.servers) <= set(servers())]
BENCH_ENV = {"PASSWORD_ITERATIONS": "1000", "MAINTENANCE": "0", "IDLE_TIMEOUT": "0"}
# DURABLE=0 (read as settings.py reads it) measures without fsync: PostgreSQL
# with fsync=off, SQLite synchronous=NORMAL. Every output says which.
DURABLE = os.environ.get("DURABLE", "1").strip().lower() in {"1", "true", "yes", "on"}


def durability():
    """One line for a benchmark's output: were commits on disk when acknowledged?"""
    if DURABLE:
        return "durable: yes (PostgreSQL fsync on, SQLite synchronous=FULL)"
    return "durable: NO (DURABLE=0: PostgreSQL fsync=off, SQLite synchronous=NORMAL)"
PASSWORD = "bench-password-1"

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


def bench(*, stores_to_run, rounds, seconds, connections, port, out, server=web.DEFAULT):
    """Each store's poll mix straight to its instance and through HAProxy, and logins, beside the ceiling.

    Every round measures the ceiling (a bare Django project under the same
    server command) and every store, in an order that alternates, so each
    round gives ratios taken minutes apart at most; the report shows their
    median and spread.
    """
    require("wrk", "wrk")
    for row in stores_to_run:
        _bench_cost.parse_row(row)  # a bad row fails before anything starts
    scripts = Path(tempfile.mkdtemp(prefix="bench-wrk-"))
    (scripts / "poll.lua").write_text(POLL_MIX)
    (scripts / "login.lua").write_text(LOGIN)
    (scripts / "floor.lua").write_text(_bench_cost.FLOOR_MIX)
    clusters, ceiling, commands = {}, None, {}
    results = {store: {"poll_direct": [], "poll_lb": [], "login": [],
                       **({_bench_cost.FLOOR: []} if _bench_cost.has_floor(store) else {})} for store in stores_to_run}
    results[CEILING] = {"poll_direct": []}
    try:
        ceiling = _start_ceiling(server, scripts)
        for index, row in enumerate(stores_to_run):
            print(f"starting the {row} cluster", file=sys.stderr)
            store, settings = _bench_cost.parse_row(row)
            clusters[row] = deploy.up(
                instances=1, sessions=store, presence=registry.session_store(store).presence, server=server,
                port=port + BLOCK * index, env={**BENCH_ENV, **_bench_cost.CLUSTER_ENV, **settings},
                durable=DURABLE, state_dir=out / "clusters" / f"c{index}")
        sessions = {store: _log_in(c.url) for store, c in clusters.items()}
        sessions[CEILING] = {"BENCH_COOKIE": "", "BENCH_CSRF": "", "BENCH_AFTER": "0"}
        for round_number in range(rounds):
            order = [CEILING, *stores_to_run]
            for name in order if round_number % 2 == 0 else reversed(order):
                print(f"round {round_number + 1}/{rounds}: {name}", file=sys.stderr)
                env, poll = sessions[name], scripts / "poll.lua"
                if name == CEILING:
                    results[name]["poll_direct"].append(
                        run_wrk(ceiling["url"], poll, env, seconds, connections, ceiling["pid"]))
                    continue
                app1 = clusters[name].instances["app1"]
                direct = f"http://127.0.0.1:{app1['port']}"
                results[name]["poll_direct"].append(run_wrk(direct, poll, env, seconds, connections, app1["pid"]))
                if _bench_cost.FLOOR in results[name]:
                    results[name][_bench_cost.FLOOR].append(
                        run_wrk(direct, scripts / "floor.lua", {}, seconds, connections, app1["pid"]))
                results[name]["poll_lb"].append(run_wrk(clusters[name].url, poll, env, seconds, connections))
                login = scripts / "login.lua"
                results[name]["login"].append(run_wrk(clusters[name].url, login, env, seconds, connections))
        lb = _lb_overhead(clusters[stores_to_run[0]], sessions[stores_to_run[0]], scripts, seconds)
        for store, cluster in clusters.items():
            direct = f"http://127.0.0.1:{cluster.instances['app1']['port']}"
            commands[store] = _bench_cost.commands_per_request(cluster, sessions[store], direct,
                                                               floor=_bench_cost.FLOOR in results[store])
    finally:
        for index in range(len(clusters)):
            deploy.down(out / "clusters" / f"c{index}")
        if ceiling:
            stop(ceiling)
        shutil.rmtree(scripts, ignore_errors=True)
    report = {"stores": _bench_cost.summarise(results, stores_to_run, _summarise(results, stores_to_run)),
              "commands": commands, "load_balancer": lb, "server": server, "durable": DURABLE, "rounds": rounds,
              "seconds": seconds, "connections": connections, "raw": results}
    report["targets"] = targets(report) + _target_rows(
        _bench_cost.targets(results, stores_to_run, [run["server_us"] for run in results[CEILING]["poll_direct"]]))
    (out / "bench.json").write_text(json.dumps(report, indent=1))
    return report


CEILING = "ceiling"  # a bare Django project that answers every request like an empty poll (loadtest/_ceiling.py)


def _start_ceiling(server, folder):
    port = free_port()
    record = spawn(web.argv(server, port=port, app="loadtest._ceiling"), log_path=folder / "ceiling.log", cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: _answers(url) or not running(record), timeout=30, what="the ceiling project")
    if not running(record):
        raise DeployError(f"the ceiling project exited at start: {(folder / 'ceiling.log').read_text()[-500:]}")
    return {"url": url, **record}


def _answers(url):
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def _log_in(url):
    """Sign up the bench user, post 20 messages, and return the cookies and the cursor wrk needs.

    The cursor is the last message's id, so every poll of the mix finds
    nothing new, as most of a chat page's polls do.
    """
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{url}/accounts/signup/", timeout=10).read()
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    form = {"username": "bench", "password1": PASSWORD, "password2": PASSWORD, "csrfmiddlewaretoken": csrf}
    opener.open(f"{url}/accounts/signup/", data=urllib.parse.urlencode(form).encode(), timeout=10).read()
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
    headers = {"Content-Type": "application/json", "X-CSRFToken": csrf, "Cookie": cookie}
    for n in range(20):
        body = json.dumps({"text": f"message {n}", "client_id": f"00000000-0000-4000-8000-{n:012d}"}).encode()
        request = urllib.request.Request(f"{url}/api/rooms/bench/messages", data=body, headers=headers)
        last = json.load(urllib.request.urlopen(request, timeout=10))["id"]
    return {"BENCH_COOKIE": cookie, "BENCH_CSRF": csrf, "BENCH_AFTER": str(last)}


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


def _lb_overhead(cluster, env, scripts, seconds):
    """p50 through HAProxy against the same instance hit directly, one connection each."""
    direct = f"http://127.0.0.1:{cluster.instances['app1']['port']}"
    through, straight = [], []
    for _ in range(3):
        through.append(run_wrk(cluster.url, scripts / "poll.lua", env, seconds, 1)["p50_ms"])
        straight.append(run_wrk(direct, scripts / "poll.lua", env, seconds, 1)["p50_ms"])
    lb, alone = sorted(through)[1], sorted(straight)[1]
    return {"store": cluster.sessions, "p50_through_lb_ms": lb, "p50_direct_ms": alone,
            "added": round(lb / alone - 1, 3)}


def _median(values):
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _spread(values):
    ordered = sorted(values)
    return {"min": round(ordered[0], 3), "median": round(_median(ordered), 3), "max": round(ordered[-1], 3)}


def _summarise(results, stores_to_run):
    """Medians of each figure, and ratios per round (to the ceiling, to the first store) with their spread."""
    base = stores_to_run[0]
    ceiling = [run["rps"] for run in results[CEILING]["poll_direct"]]
    ceiling_us = [run["server_us"] for run in results[CEILING]["poll_direct"]]
    summary = {CEILING: {"poll_direct": {"rps": _median(ceiling), "per_round": ceiling,
                                         "server_us": _median(ceiling_us)}}}
    for store in stores_to_run:
        mixes = results[store]
        summary[store] = {
            mix: {key: _median([run[key] for run in runs])
                  for key in ("rps", "p50_ms", "p99_ms", "generator_cpu", "bad_responses")}
            for mix, runs in mixes.items()
        }
        for mix in ("poll_direct", "poll_lb"):
            rps = [run["rps"] for run in mixes[mix]]
            summary[store][mix]["to_ceiling"] = _spread([a / b for a, b in zip(rps, ceiling)])
        direct_us = [run["server_us"] for run in mixes["poll_direct"]]
        summary[store]["poll_direct"]["server_us"] = _median(direct_us)
        # Ceiling's CPU per request over the store's, round by round: the ratio of req/s one core could give.
        summary[store]["poll_direct"]["cpu_to_ceiling"] = _spread([c / a for a, c in zip(direct_us, ceiling_us)])
        for mix in ("poll_direct", "poll_lb", "login"):
            rps = [run["rps"] for run in mixes[mix]]
            summary[store][mix]["to_base"] = _spread([a / b["rps"] for a, b in zip(rps, results[base][mix])])
        summary[store]["lb_to_direct"] = _spread(
            [a["rps"] / b["rps"] for a, b in zip(mixes["poll_lb"], mixes["poll_direct"])])
    return summary


def targets(report):
    """The issue's targets, each with the figure that meets it or not."""
    stores, lb = report["stores"], report["load_balancer"]
    base = next(iter(s for s in stores if s != CEILING))
    checks = [(f"{base}'s poll mix, straight to the instance, at least 0.5 of the ceiling",
               stores[base]["poll_direct"]["to_ceiling"]["min"], 0.5),
              (f"{base} through HAProxy within 15 % of straight to the instance",
               stores[base]["lb_to_direct"]["min"], 0.85),
              ("the load balancer adds at most 10 % to p50 (one connection)", 1 / (1 + lb["added"]), 1 / 1.10)]
    for store, row in registry.SESSION_STORES.items():
        if row.bench_target and store in stores:
            checks.append((f"{store} at least {row.bench_target} of {base} in every round (through HAProxy)",
                           stores[store]["poll_lb"]["to_base"]["min"], row.bench_target))
    for store in stores:
        if store != CEILING:
            poll = stores[store]["poll_lb"]
            checks.append((f"{store}: poll mix p99 at most 3 x p50 through HAProxy",
                           3 * poll["p50_ms"] / poll["p99_ms"], 1))
    return _target_rows(checks)


def _target_rows(checks):
    return [{"target": name, "figure": round(figure, 3), "needed": round(needed, 3), "met": figure >= needed}
            for name, figure, needed in checks]


@contextmanager
def _servers(kinds):
    """Private servers of these kinds on free ports; yield the state folder and {kind: the setting for it}."""
    state = Path(tempfile.mkdtemp(prefix="bench-"))
    started = {}
    try:
        for kind in kinds:
            started[kind] = start_server(kind, port=free_port(), state_dir=state, durable=DURABLE)
        yield state, {kind: server_settings(kind, record)
                      for kind, record in started.items()}
    finally:
        for kind, record in started.items():
            stop_server(kind, record)
        shutil.rmtree(state, ignore_errors=True)


def micro(kind, *, stores_to_run, argument=None):
    """Run loadtest._micro in a fresh process per store; return its figures."""
    table = registry.SESSION_STORES if kind == "sessions" else registry.PRESENCE_STORES
    # Counters live in Redis whatever the store: start it too.
    kinds = registry.servers_of(*(table[store] for store in stores_to_run), registry.presence_store("redis"))
    with _servers(kinds) as (state, settings):
        base_env = {
            **os.environ, **BENCH_ENV, "DJANGO_SETTINGS_MODULE": "labsite.settings", "SECRET_KEY": "bench",
            "STATE_DIR": str(state), **{name: value for kind in settings.values() for name, value in kind.items()},
        }
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=base_env, check=True)
        figures = []
        for store in stores_to_run:
            variable = "SESSION_STORE" if kind == "sessions" else "PRESENCE_STORE"
            # Filling a room of 10,000 takes seconds: nobody may expire meanwhile,
            # or the benchmark measures expiry instead of a heartbeat.
            env = {**base_env, variable: store, "PRESENCE_HEARTBEAT_INTERVAL": "300"}
            done = subprocess.run(
                [sys.executable, "-m", "loadtest._micro", kind, *([argument] if argument else [])],
                cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
            )
            if done.returncode:
                raise DeployError(f"{kind} benchmark of {store} failed: {done.stderr.strip()[-800:]}")
            result = json.loads(done.stdout)
            figures.extend(result if isinstance(result, list) else [result])
        return figures


def post_cost(databases, repeat):
    """Run loadtest._micro posts on each database (sqlite, postgres), fresh ones; return its figures."""
    rows = [registry.database(name) for name in databases]
    with _servers(registry.servers_of(*rows)) as (state, settings):
        base_env = {**os.environ, **BENCH_ENV, "DJANGO_SETTINGS_MODULE": "labsite.settings", "SECRET_KEY": "bench",
                    "STATE_DIR": str(state), "BENCH_REPEAT": str(repeat)}
        base_env.pop("DATABASE_URL", None)
        figures = []
        for row in rows:
            env = dict(base_env)
            for kind in row.servers:
                env.update(settings[kind])
            subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
            done = subprocess.run([sys.executable, "-m", "loadtest._micro", "posts"], cwd=ROOT, env=env,
                                  capture_output=True, text=True, timeout=900)
            if done.returncode:
                raise DeployError(f"post benchmark on {row.name} failed: {done.stderr.strip()[-800:]}")
            figures.append(json.loads(done.stdout))
        return figures


def bench_against(ref, *, rounds, seconds, connections, out, server=web.DEFAULT):
    """The memory poll mix of this checkout against commit `ref`'s, one instance each, in rounds A B, B A, ...

    `ref` is checked out into a temporary git worktree with a virtualenv of
    its own (its dependencies as it declared them) and started by its own
    `python -m deploy`; both instances are hit straight and through their
    HAProxy, in alternating order, so each round gives a ratio.
    """
    require("wrk", "wrk")
    scratch = Path(tempfile.mkdtemp(prefix="bench-against-"))
    tree, scripts = scratch / "tree", scratch
    (scripts / "poll.lua").write_text(POLL_MIX)
    old_python = tree / ".venv" / "bin" / "python"
    old_state, new_state = out / "clusters" / "against", out / "clusters" / "this"
    new = old = None
    try:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref],
                       check=True, capture_output=True, text=True, timeout=120)
        print(f"installing {ref} into its own virtualenv", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(tree / ".venv")], check=True, timeout=300)
        installed = subprocess.run([str(old_python), "-m", "pip", "install", "-q", "-e", str(tree)],
                                   capture_output=True, text=True, timeout=900)
        if installed.returncode:
            raise DeployError(f"installing {ref} failed: {installed.stderr.strip()[-800:]}")
        print(f"starting {ref}'s cluster and this checkout's", file=sys.stderr)
        old_argv = [str(old_python), "-m", "deploy", "--state-dir", str(old_state)]
        subprocess.run([*old_argv, "up", "--instances", "1", "--sessions", "memory", "--presence", "memory",
                        "--port", str(free_base_port()),
                        *[f"--env={name}={value}" for name, value in BENCH_ENV.items()]],
                       cwd=tree, check=True, capture_output=True, text=True, timeout=300)
        old = json.loads(subprocess.run([*old_argv, "status", "--json"], cwd=tree, check=True,
                                        capture_output=True, text=True, timeout=60).stdout)
        old = {"lb": old["url"], "direct": f"http://127.0.0.1:{old['instances'][0]['port']}"}
        cluster = deploy.up(instances=1, sessions="memory", presence="memory", server=server,
                            port=free_base_port(), env=BENCH_ENV, durable=DURABLE,
                            state_dir=new_state)
        new = {"lb": cluster.url, "direct": f"http://127.0.0.1:{cluster.instances['app1']['port']}"}
        targets = {ref: old, "this": new}
        sessions = {name: _log_in(urls["lb"]) for name, urls in targets.items()}
        results = {name: {"direct": [], "lb": []} for name in targets}
        for round_number in range(rounds):
            order = [ref, "this"] if round_number % 2 == 0 else ["this", ref]
            for name in order:
                print(f"round {round_number + 1}/{rounds}: {name}", file=sys.stderr)
                for path in ("direct", "lb"):
                    results[name][path].append(
                        run_wrk(targets[name][path], scripts / "poll.lua", sessions[name], seconds, connections))
    finally:
        if new:
            deploy.down(new_state)
        if old_python.exists():
            subprocess.run([str(old_python), "-m", "deploy", "--state-dir", str(old_state), "down"], cwd=tree,
                           capture_output=True, timeout=120)
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                       capture_output=True, timeout=120)
        shutil.rmtree(scratch, ignore_errors=True)
    report = {"against": ref, "server": server, "rounds": rounds, "seconds": seconds, "connections": connections,
              "raw": results}
    for path in ("direct", "lb"):
        report[path] = {
            "rps": {name: _median([run["rps"] for run in results[name][path]]) for name in targets},
            "p99_ms": {name: _median([run["p99_ms"] for run in results[name][path]]) for name in targets},
            "ratio": _spread([a["rps"] / b["rps"] for a, b in zip(results["this"][path], results[ref][path])]),
        }
    (out / "against.json").write_text(json.dumps(report, indent=1))
    return report
