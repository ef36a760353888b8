"""Split brain, counted the Jepsen way: acknowledged writes that a partition and its heal lose.

A cluster with every store node and instance in a namespace of its own
(`deploy up --netns`) is split in two. The minority side holds the old
primary and app1; the majority side holds the replicas (or standbys) and
app2, and gets a new primary: Sentinel promotes a replica by itself;
PostgreSQL has no arbiter, so the run promotes a standby as an operator who
cannot see the old primary would. Users on both sides go on logging in and
writing to their sessions, each pinned to one side by talking to its
instance directly, never through HAProxy. Then the network heals, the
cluster converges (Sentinel turns the old Redis primary into a replica; the
old PostgreSQL primary is stopped and rejoins as a standby, as an operator
does), and every user reads back what it was told was saved.

Counted per side: session writes acknowledged (200) and then lost (the
counter read back is lower), logins acknowledged and then lost (the session
is gone: 401), presence heartbeats acknowledged and then lost (the user is
not online after the heal), requests refused (anything but 200), and the
seconds from the heal until every node agrees on one primary. For
PostgreSQL also the writes the old primary holds that its users were told
were refused (with `--pg-sync`, a commit no standby confirmed is still
committed on the primary): the rejoin throws them away.
"""

import json
import math
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import requests

from deploy import cluster
from deploy.cluster import DeployError, Topology, free_base_port
from loadtest import _page as page
from loadtest._accounts import PASSWORD, prepare
from loadtest._svg import series_chart

ROOM = "split"
# Every limit as the site ships it: the users exist beforehand (accounts()).
SITE_ENV = {"PASSWORD_ITERATIONS": "1000"}
TICK = 0.25  # seconds between a user's session writes
HEARTBEAT_EVERY = 4  # ticks
LOGIN_EVERY = 8  # ticks: a new user logs in on each side this often
TIMEOUT = 3  # seconds a request may take before it counts as refused
MINORITY_INSTANCE, MAJORITY_INSTANCE = "app1", "app2"
SCENARIOS = ("redis", "redis-sync", "postgres", "postgres-sync")
NEWCOMER_SLACK = 30  # seconds of newcomers beyond the partition's: the settling before it, a slow promotion


@dataclass(frozen=True)
class Scenario:
    name: str
    store: str  # "redis" or "postgres": where sessions live
    sync: int = 0  # Redis: min-replicas-to-write
    pg_sync: str = "off"  # PostgreSQL: synchronous_standby_names, "ANY k"

    def up_options(self):
        if self.store == "redis":
            return {"sessions": "redis", "presence": "redis", "db": "sqlite",
                    "topology": Topology(redis="sentinel", redis_replicas=2, redis_sync=self.sync)}
        return {"sessions": "db", "presence": "memory", "db": "postgres",
                "topology": Topology(pg_standbys=2, pg_sync=self.pg_sync)}

    @property
    def minority(self):
        if self.store == "redis":
            return ["redis1", "sentinel1", MINORITY_INSTANCE]
        return ["pg1", MINORITY_INSTANCE]

    @property
    def majority(self):
        if self.store == "redis":
            return ["redis2", "redis3", "sentinel2", "sentinel3", MAJORITY_INSTANCE]
        return ["pg2", "pg3", MAJORITY_INSTANCE]


def scenario(name):
    return {"redis": Scenario("redis", "redis"), "redis-sync": Scenario("redis --redis-sync 1", "redis", 1),
            "postgres": Scenario("postgres", "postgres"),
            "postgres-sync": Scenario("postgres --pg-sync ANY 1", "postgres", pg_sync="ANY 1")}[name]


@dataclass
class User:
    """One simulated user, pinned to one instance: what it was told, in order."""

    side: str
    url: str
    name: str  # a user made beforehand (accounts())
    acknowledged: list = field(default_factory=list)  # (seconds, counter) of every 200 to a session write
    counter: int = 0
    logged_in_at: float = None  # seconds, when the login was acknowledged
    heartbeat_at: float = None  # seconds, the last acknowledged heartbeat
    stored: int = None  # the counter read back after the heal (None: the session was gone)
    http: requests.Session = field(default_factory=requests.Session, repr=False)

    def log_in(self):
        self.http.get(f"{self.url}/accounts/login/", timeout=TIMEOUT)
        answer = self.http.post(f"{self.url}/accounts/login/", allow_redirects=False, timeout=TIMEOUT, data={
            "username": self.name, "password": PASSWORD,
            "csrfmiddlewaretoken": self.http.cookies.get("csrftoken", "")})
        return answer.status_code == 302

    def call(self, method, path, **json_body):
        headers = {"X-CSRFToken": self.http.cookies.get("csrftoken", "")}
        return self.http.request(method, f"{self.url}{path}", json=json_body or None, headers=headers,
                                 allow_redirects=False, timeout=TIMEOUT)

    def read(self, url, path):
        """GET path at another address (HAProxy), with this user's cookies."""
        return requests.get(f"{url}{path}", cookies=self.http.cookies.get_dict(), allow_redirects=False,
                            timeout=TIMEOUT)


def accounts(state_dir, sides, *, users, newcomer_seconds):
    """{side: an iterator of names}, users made beforehand (loadtest/_accounts.py) for each side.

    Enough for `users` users and a newcomer every TICK * LOGIN_EVERY for
    newcomer_seconds; a side that runs out makes no more newcomers. Made
    beforehand because every user comes from this machine: signed up over
    HTTP they would meet the site's per-address sign-up limit.
    """
    per_side = users + math.ceil(newcomer_seconds / (TICK * LOGIN_EVERY))
    names = prepare(per_side * len(sides), state_dir=state_dir)
    return {side: iter(names[n * per_side:(n + 1) * per_side]) for n, side in enumerate(sides)}


class Recorder:
    """Every request's outcome in time, by side: the timeline and the refusals; and when the site answered 503."""

    def __init__(self, started):
        self.started, self.lock, self.events, self.unavailable = started, threading.Lock(), [], []

    def now(self):
        return time.monotonic() - self.started

    def note(self, side, what, ok, status=None):
        with self.lock:
            self.events.append((round(self.now(), 3), side, what, ok))
            if status == 503:
                self.unavailable.append(round(self.now(), 3))


def run(name, *, seconds, users_per_side, out):
    """Run one scenario: up, load, partition for `seconds`, heal, converge, audit, down. Return its result."""
    chosen = scenario(name)
    state_dir = Path(out) / "clusters" / name
    started = time.monotonic()
    marks = {}
    try:
        deployed = cluster.up(instances=2, port=free_base_port(), env=SITE_ENV, namespaces=True,
                              state_dir=state_dir, **chosen.up_options())
        recorder = Recorder(started)
        urls = {"minority": deployed.instance_url(MINORITY_INSTANCE),
                "majority": deployed.instance_url(MAJORITY_INSTANCE)}
        names = accounts(state_dir, urls, users=users_per_side, newcomer_seconds=seconds + NEWCOMER_SLACK)
        users = [User(side, urls[side], next(names[side])) for side in urls for _ in range(users_per_side)]
        with ThreadPoolExecutor(len(users)) as pool:
            signed = list(pool.map(lambda u: u.log_in(), users))
        if not all(signed):
            raise RuntimeError(f"{signed.count(False)} of {len(users)} users could not log in before the partition")
        for user in users:
            user.logged_in_at = recorder.now()
        stop = threading.Event()
        newcomers = []
        with ThreadPoolExecutor(len(users) + 2) as pool:
            loops = [pool.submit(_user_loop, user, recorder, stop) for user in users]
            loops += [pool.submit(_newcomer_loop, side, urls[side], recorder, stop, newcomers, names[side])
                      for side in urls]
            _settle(recorder, seconds=2)
            marks["partition"] = recorder.now()
            cluster.partition(chosen.minority, chosen.majority, state_dir=state_dir)
            if chosen.store == "postgres":
                marks["promoted"] = _promote_majority(state_dir, recorder)
            else:
                marks["promoted"] = _wait_promotion(state_dir, recorder, seconds)
            _settle(recorder, seconds=max(0.0, seconds - (recorder.now() - marks["partition"])))
            stop.set()
            for loop in loops:
                loop.result()
        ahead = _ahead_on_old_primary(users) if chosen.store == "postgres" else None
        marks["heal"] = recorder.now()
        cluster.heal(state_dir=state_dir)
        if chosen.store == "postgres":
            # Nothing demotes the old primary: stopped and started again, it rejoins as a standby of the new one.
            cluster.kill("pg1", state_dir=state_dir)
            cluster.start("pg1", state_dir=state_dir)
        marks["converged"] = _wait_converged(state_dir, recorder, chosen)
        audit = _audit([*users, *newcomers], through=deployed.url, presence=chosen.store == "redis")
    finally:
        cluster.down(state_dir=state_dir)
    refused, refused_by_kind = _refused(recorder.events, marks)
    return {"scenario": chosen.name, "store": chosen.store, "sync": chosen.sync, "pg_sync": chosen.pg_sync,
            "seconds": seconds, "ahead_on_old_primary": ahead,
            "users_per_side": users_per_side, "marks": {k: round(v, 2) for k, v in marks.items()},
            "convergence_s": round(marks["converged"] - marks["heal"], 2), **audit,
            "refused": refused, "refused_by_kind": refused_by_kind, "timeline": _timeline(recorder.events)}


def _ahead_on_old_primary(users):
    """How far each minority user's session on the old PostgreSQL primary is ahead of what it was told, before the heal.

    Each minority user reads its session back through app1, which still
    reaches the old primary. A write sets the counter (it does not add to
    it), so a counter above the last acknowledged one shows that the
    user's last write that got there was committed although its answer was
    a refusal (a synchronous commit no standby confirmed, then cancelled)
    or never came; the gap counts the writes the user tried since its last
    acknowledged one up to that write, not each committed write.
    """
    ahead = {"users": 0, "counter_steps": 0, "unread": 0}
    for user in users:
        if user.side != "minority":
            continue
        try:
            answer = user.call("GET", "/api/session-counter")
        except requests.RequestException:
            answer = None
        if answer is None or answer.status_code != 200:
            ahead["unread"] += 1
            continue
        last = user.acknowledged[-1][1] if user.acknowledged else 0
        steps = max(0, (answer.json().get("counter") or 0) - last)
        ahead["users"] += steps > 0
        ahead["counter_steps"] += steps
    return ahead


def _settle(recorder, *, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def _user_loop(user, recorder, stop):
    ticks = 0
    while not stop.is_set():
        ticks += 1
        user.counter += 1
        status = _status(lambda: user.call("POST", "/api/session-counter", counter=user.counter, room=ROOM))
        if status == 200:
            user.acknowledged.append((recorder.now(), user.counter))
        recorder.note(user.side, "session write", status == 200, status)
        if ticks % HEARTBEAT_EVERY == 0:
            beat = _ok(lambda: user.call("POST", f"/api/rooms/{ROOM}/presence"))
            if beat:
                user.heartbeat_at = recorder.now()
            recorder.note(user.side, "heartbeat", beat)
        stop.wait(TICK)


def _newcomer_loop(side, url, recorder, stop, newcomers, names):
    """A new user logs in on this side every LOGIN_EVERY ticks, while names last: logins made during the partition."""
    for name in names:
        if stop.wait(TICK * LOGIN_EVERY):
            return
        user = User(side, url, name)
        try:
            ok = user.log_in()
        except requests.RequestException:
            ok = False
        if ok:
            user.logged_in_at = recorder.now()
            newcomers.append(user)
        recorder.note(side, "login", ok)


def _ok(request):
    return _status(request) == 200


def _status(request):
    """The answer's status code, or None when none came (refused, timed out)."""
    try:
        return request().status_code
    except requests.RequestException:
        return None


def _wait_promotion(state_dir, recorder, seconds):
    """When the majority's Sentinels name a new primary (seconds since the start), or None within the run."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        roles = _roles(state_dir)
        if any(roles.get(node) == "primary" for node in ("redis2", "redis3")):
            return recorder.now()
        time.sleep(0.2)
    return None


def _promote_majority(state_dir, recorder):
    try:
        cluster.promote(force=True, state_dir=state_dir)
    except DeployError:
        return None
    return recorder.now()


def _roles(state_dir):
    return {row["name"]: row["role"] for row in cluster.status(state_dir=state_dir)["stores"]}


def _wait_converged(state_dir, recorder, chosen, timeout=60):
    """When every node of the store is up and exactly one is primary (seconds since the start)."""
    deadline = time.monotonic() + timeout
    followers = {"redis": "replica", "postgres": "standby"}[chosen.store]
    while time.monotonic() < deadline:
        roles = [role for node, role in _roles(state_dir).items() if not node.startswith("sentinel")]
        if roles.count("primary") == 1 and roles.count(followers) == len(roles) - 1:
            return recorder.now()
        time.sleep(0.2)
    raise RuntimeError(f"the store did not converge to one primary within {timeout} s of the heal")


def _audit(users, *, through, presence, sides=("minority", "majority")):
    """Read every user's session back through HAProxy after the heal; count what was acknowledged and lost.

    presence: count presence too (it is shared only in Redis; memory presence is each instance's own).
    """
    result = {side: {"writes_acknowledged": 0, "writes_lost": 0, "logins_acknowledged": 0, "logins_lost": 0,
                     "heartbeats_acknowledged": 0, "presence_lost": 0} for side in sides}
    online = None
    for user in users:
        counts = result[user.side]
        counts["logins_acknowledged"] += 1
        try:
            answer = user.read(through, "/api/session-counter")
            if online is None and presence and answer.status_code == 200:
                listed = user.read(through, f"/api/rooms/{ROOM}/presence")
                online = set(listed.json().get("online", ())) if listed.status_code == 200 else set()
        except requests.RequestException:
            answer = None
        if answer is None or answer.status_code != 200:
            counts["logins_lost"] += 1
            stored = None
        else:
            stored = answer.json().get("counter")
        user.stored = stored
        counts["writes_acknowledged"] += len(user.acknowledged)
        counts["writes_lost"] += sum(1 for _, counter in user.acknowledged if stored is None or counter > stored)
        if presence and user.heartbeat_at is not None:
            counts["heartbeats_acknowledged"] += 1
            counts["presence_lost"] += user.name not in (online or set())
    total = {key: sum(result[side][key] for side in result) for key in result[sides[0]]}
    lost_pct = 100 * total["writes_lost"] / total["writes_acknowledged"] if total["writes_acknowledged"] else 0.0
    return {"sides": result, "total": total, "writes_lost_pct": round(lost_pct, 1)}


def _refused(events, marks):
    """Requests refused during the partition, by side, and by side and kind (session write, heartbeat, login)."""
    start, end = marks["partition"], marks["heal"]
    refused = [(side, what) for t, side, what, ok in events if not ok and start <= t <= end]
    by_kind = {side: {} for side in ("minority", "majority")}
    for side, what in refused:
        by_kind[side][what] = by_kind[side].get(what, 0) + 1
    return {side: sum(kinds.values()) for side, kinds in by_kind.items()}, by_kind


def _timeline(events):
    """Per second: session writes acknowledged and requests refused, by side."""
    last = int(max((t for t, *_ in events), default=0)) + 1
    series = {f"{side} {what}": [0] * last for side in ("minority", "majority") for what in ("acked", "refused")}
    for t, side, what, ok in events:
        if what == "session write" or not ok:
            series[f"{side} {'acked' if ok else 'refused'}"][int(t)] += 1
    return series


# Output


COLUMNS = [
    ("scenario", lambda r: r["scenario"]),
    ("acked writes", lambda r: str(r["total"]["writes_acknowledged"])),
    ("acked writes lost", lambda r: f"{r['total']['writes_lost']} ({r['writes_lost_pct']:g} %)"),
    ("lost on minority", lambda r: f"{r['sides']['minority']['writes_lost']} of "
                                   f"{r['sides']['minority']['writes_acknowledged']}"),
    ("logins lost", lambda r: f"{r['total']['logins_lost']} of {r['total']['logins_acknowledged']}"),
    ("presence lost", lambda r: f"{r['total']['presence_lost']} of {r['total']['heartbeats_acknowledged']}"),
    ("refused, minority", lambda r: _refused_cell(r, "minority")),
    ("refused, majority", lambda r: _refused_cell(r, "majority")),
    ("promoted after", lambda r: "never" if r["marks"].get("promoted") is None
     else f"{r['marks']['promoted'] - r['marks']['partition']:.1f} s"),
    ("converged after heal", lambda r: f"{r['convergence_s']:.1f} s"),
]


def _refused_cell(result, side):
    """The side's refusals, and by kind when the run recorded them: "59 (54 session write, 5 login)"."""
    kinds = result.get("refused_by_kind", {}).get(side)
    detail = f" ({', '.join(f'{n} {what}' for what, n in sorted(kinds.items()))})" if kinds else ""
    return f"{result['refused'][side]}{detail}"


def table(results):
    lines = ["| " + " | ".join(name for name, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell(r) for _, cell in COLUMNS) + " |" for r in results]
    return "\n".join(lines)


def chart(result):
    """Per second, by side, with the marks as dashed lines; the axis runs on to the last mark (the convergence)."""
    marks = {name: t for name, t in result["marks"].items() if t is not None}
    seconds = max(len(next(iter(result["timeline"].values()))), int(max(marks.values(), default=0)) + 2)
    series = {name: counts + [0] * (seconds - len(counts)) for name, counts in result["timeline"].items()}
    title = ", ".join(f"{name} {t:.0f} s" for name, t in marks.items())
    return series_chart(f"{result['scenario']}: per second ({title})", list(range(seconds)), series,
                        x_label="seconds since the start", width=640, legend_columns=2,
                        markers=[(t, name) for name, t in marks.items()])


def headline(results):
    return "; ".join(f"{r['scenario']}: {r['total']['writes_lost']} of {r['total']['writes_acknowledged']} "
                     f"acknowledged writes lost ({r['writes_lost_pct']:g} %)" for r in results)


def write(results, out, run):
    """split-brain.json, a timeline SVG per scenario, and the page (loadtest/_page.py); return the SVG paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "split-brain.json").write_text(json.dumps({"command": run.command, "results": results}, indent=1))
    charts = {}
    for result in results:
        path = out / f"split-brain-{result['scenario'].replace(' ', '').replace('--', '-')}.svg"
        path.write_text(chart(result))
        charts[path.name] = path.read_text()
    page.write(out, run, title="Split brain, counted", headline=headline(results), sections=[
        ("", page.paragraphs(
            f"The old primary and app1 on the minority side, the rest on the majority side; users pinned to one "
            f"side write to their sessions every {TICK:g} s, heartbeat every {TICK * HEARTBEAT_EVERY:g} s, and a "
            f"new user logs in on each side every {TICK * LOGIN_EVERY:g} s. Jepsen's Redis test (2013, five "
            "nodes under Sentinel) lost 56 % of acknowledged writes this way.")),
        ("", page.columns_table(COLUMNS, results)),
        ("Timelines", page.charts(charts.values())),
    ])
    return [out / name for name in charts]


def plan(names):
    """The scenarios, checked: ValueError for an unknown name."""
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise ValueError(f"no scenario {', '.join(unknown)}; choose from: {', '.join(SCENARIOS)}")
    return names

