"""Checkers: plain functions from a history's events (history.py) to figures.

Conventions every checker keeps, so that figures agree with each other:
- an operation counts at the time it completed (when its outcome was
  known); a window [start, end) holds the operations completed in it;
- only "ok" is acknowledged; "unknown" (a timeout, a lost connection, an
  operation that never completed) is never counted as refused, and never
  as acknowledged;
- a user's writes are values of one register (a counter that a write sets)
  or members of one list; a write is lost when a read by the same user,
  invoked after the write was acknowledged, saw a lower counter or a list
  without it, or saw the session gone (refusal "401"); a write that no read
  showed lost is kept when a final read of the user begun after it
  succeeded, and otherwise unconfirmed (each final read failed some other
  way, or none ran): never counted as lost, since nothing showed it gone.
  A login likewise: lost when the final read found the session gone (401),
  unconfirmed when no final read succeeded or found it gone.
"""

from collections import Counter, defaultdict

GONE = "401"  # a read refused with this: the session is gone, so every write in it is


def ops(events, what=None, outcome=None):
    """The operations, of one kind (or several) and one outcome if given, in the order they completed."""
    kinds = (what,) if isinstance(what, str) else what
    found = [e for e in events if e["type"] == "op" and (kinds is None or e["what"] in kinds)
             and (outcome is None or e["outcome"] == outcome)]
    return sorted(found, key=lambda op: (op["completed"] is None, op["completed"] or 0))


def homes(events):
    """Each user's node: the node of its first operation (the instance it logged in at)."""
    home = {}
    for op in sorted(ops(events), key=lambda op: op["invoked"]):
        home.setdefault(op["who"], op["node"])
    return home


def final_reads(events):
    """Each user's final read: the value read back (None when the session is gone or the read did not succeed)."""
    return {op["who"]: op["value"] if op["outcome"] == "ok" else None for op in ops(events, "final-read")}


def lost_writes(events):
    """The acknowledged writes that a later read or the final read showed gone, in the order they completed."""
    return [write for write, later in _judged_writes(events) if any(_missing(write["value"], v) for _, v in later)]


def unconfirmed_writes(events):
    """The acknowledged writes that no read showed gone and no final read begun after them showed kept."""
    return [write for write, later in _judged_writes(events)
            if not any(final for final, _ in later) and not any(_missing(write["value"], v) for _, v in later)]


def _judged_writes(events):
    """[(acknowledged write, [(final or not, value) of each read of its user begun after it that told something])]."""
    reads = defaultdict(list)
    for op in ops(events, ("read", "final-read")):
        seen = _seen(op)
        if seen is not None:
            reads[op["who"]].append((op["invoked"], op["what"] == "final-read", seen[0]))
    return [(write, [(final, value) for invoked, final, value in reads[write["who"]] if invoked >= write["completed"]])
            for write in ops(events, "write", "ok")]


def duplicated_writes(events):
    """Acknowledged writes that a final read (of a list) holds more than once."""
    final = final_reads(events)
    return [write for write in ops(events, "write", "ok") if isinstance(final.get(write["who"]), list)
            and final[write["who"]].count(write["value"]) > 1]


def sessions_lost(events):
    """The users whose login was acknowledged and whose session a final read found gone (401)."""
    return _logins_whose_final_read(events, lambda reads: GONE in reads)


def sessions_unconfirmed(events):
    """The users whose login was acknowledged and whose session no final read found, nor found gone."""
    return _logins_whose_final_read(events, lambda reads: "ok" not in reads and GONE not in reads)


def _logins_whose_final_read(events, holds):
    """The users with an acknowledged login whose final reads' outcomes ("ok", or the refusal) `holds` for."""
    reads = defaultdict(set)
    for op in ops(events, "final-read"):
        reads[op["who"]].add("ok" if op["outcome"] == "ok" else op["refusal"])
    return sorted({op["who"] for op in ops(events, "login", "ok") if holds(reads[op["who"]])})


def presence_lost(events):
    """The users with an acknowledged heartbeat whom the first successful presence read did not list."""
    listed = ops(events, "presence-read", "ok")
    online = set(listed[0]["value"] or ()) if listed else set()
    return sorted({op["who"] for op in ops(events, "heartbeat", "ok") if op["who"] not in online})


def polls_missed_or_seen_twice(events):
    """Messages a poller was owed and never received, or received more than once.

    A post's value is {"room", "id"} (ok: the message was acknowledged); a
    poll's is {"room", "ids"}, the messages it delivered. A poller follows a
    room from the end of its first successful poll there (its cursor set) to
    the start of its last, so it is owed, exactly once, every message whose
    post began after the first ended and was acknowledged by the time the
    last began. A post whose outcome is unknown (a timeout, or it never
    completed) is owed to nobody, as one acknowledged after the last poll
    began: either may reach the poller later. Any message received twice
    counts, owed or not. {"pollers", "owed", "missed": [(poller, room, id)],
    "seen_twice": [(poller, room, id)]}.
    """
    followed = defaultdict(list)
    for poll in ops(events, "poll", "ok"):
        followed[(poll["who"], poll["value"]["room"])].append(poll)
    posts = ops(events, "post", "ok")
    owed, missed, twice = 0, [], []
    for (who, room), polls in followed.items():
        polls.sort(key=lambda poll: poll["invoked"])
        since, until = polls[0]["completed"], polls[-1]["invoked"]
        received = Counter(message for poll in polls for message in poll["value"]["ids"])
        for post in posts:
            if post["value"]["room"] == room and post["invoked"] >= since and post["completed"] <= until:
                owed += 1
                if not received[post["value"]["id"]]:
                    missed.append((who, room, post["value"]["id"]))
        twice += [(who, room, message) for message, count in received.items() if count > 1]
    return {"pollers": len(followed), "owed": owed, "missed": missed, "seen_twice": twice}


def posts_lost(events):
    """The acknowledged posts that the read-backs of their room lack, in the order they completed.

    A read-back is a "final-poll" operation, value {"room", "messages":
    [[id, client_id], ...]} (client.py). A successful read-back of a post's
    room invoked after the post was acknowledged covers it; the post is lost
    when read-backs cover it and none holds its id with its client_id (an id
    alone could be a later message's, after a failover lost the first). A
    post no read-back covers (each failed, or none ran) is not lost but
    unconfirmed (posts_unconfirmed): nothing has shown it gone.
    """
    return [post for post, held in _read_back(events) if held and not any(held)]


def posts_unconfirmed(events):
    """The acknowledged posts that no successful read-back of their room, invoked after them, covers."""
    return [post for post, held in _read_back(events) if not held]


def _read_back(events):
    """[(acknowledged post, [whether each read-back covering it holds it])]; posts_lost and posts_unconfirmed."""
    reads = defaultdict(list)
    for op in ops(events, "final-poll", "ok"):
        reads[op["value"]["room"]].append((op["invoked"], {(i, c) for i, c in op["value"]["messages"]}))
    return [(post, [(post["value"]["id"], post["value"]["client_id"]) in held
                    for invoked, held in reads[post["value"]["room"]] if invoked >= post["completed"]])
            for post in ops(events, "post", "ok")]


def stale_reads(events):
    """Reads (not the final one) that saw less than the same user's last write acknowledged before they began."""
    stale = []
    writes = ops(events, "write", "ok")
    for read in ops(events, "read", "ok"):
        before = [w["value"] for w in writes if w["who"] == read["who"] and w["completed"] <= read["invoked"]]
        if before and _missing(before[-1], read["value"]):
            stale.append(read)
    return stale


def stale_versions(events):
    """Reads of one register shared by every writer that returned a version older than the newest one
    acknowledged before they began (a write's and a read's value: its version, which compare as lists)."""
    writes, newest, stale = iter(ops(events, "write", "ok")), None, []
    write = next(writes, None)
    for read in sorted(ops(events, "read", "ok"), key=lambda op: op["invoked"]):
        while write is not None and write["completed"] <= read["invoked"]:
            newest = write["value"] if newest is None else max(newest, write["value"])
            write = next(writes, None)
        if newest is not None and read["value"] < newest:
            stale.append(read)
    return stale


def latencies_ms(events, what):
    """How long each acknowledged operation of a kind took, in ms, in the order they completed."""
    return [(op["completed"] - op["invoked"]) * 1000 for op in ops(events, what, "ok")]


def reads_ahead(events):
    """Reads that saw a counter above the same user's last acknowledged write: a write refused yet kept.

    {"users": how many users, "counter_steps": by how much in all, "unread": reads that did not succeed}.
    """
    writes = ops(events, "write", "ok")
    ahead = {"users": 0, "counter_steps": 0, "unread": 0}
    for read in ops(events, "read"):
        if read["outcome"] != "ok":
            ahead["unread"] += 1
            continue
        before = [w["value"] for w in writes if w["who"] == read["who"] and w["completed"] <= read["invoked"]]
        steps = max(0, (read["value"] or 0) - (before[-1] if before else 0))
        ahead["users"] += steps > 0
        ahead["counter_steps"] += steps
    return ahead


def refusals(events, start=float("-inf"), end=float("inf"), *, key="what"):
    """Operations refused (failed) completed within [start, end], counted by op[key] (what, node, refusal)."""
    return dict(Counter(op[key] for op in ops(events, outcome="failed") if start <= op["completed"] <= end))


def unknown(events, start=float("-inf"), end=float("inf")):
    """Operations whose outcome is unknown: completed within [start, end], or never completed."""
    return sum(1 for op in ops(events, outcome="unknown")
               if op["completed"] is None or start <= op["completed"] <= end)


def window(events, start, end, lost_ids=None):
    """Writes acknowledged in [start, end), those of them lost (lost_ids: lost_writes()' ids), operations refused."""
    if lost_ids is None:
        lost_ids = {op["id"] for op in lost_writes(events)}
    acked = [op for op in ops(events, "write", "ok") if start <= op["completed"] < end]
    refused = sum(1 for op in ops(events, outcome="failed") if start <= op["completed"] < end)
    return {"acknowledged": len(acked), "lost": sum(op["id"] in lost_ids for op in acked), "refused": refused}


def faults(events, action=None):
    return [e for e in events if e["type"] == "fault" and (action is None or e["action"] == action)]


def condition(events, name):
    """When the run first saw the named condition hold (a sample's "at"), or None."""
    return next((e["at"] for e in events if e["type"] == "sample" and e.get("condition") == name), None)


def parameters(events):
    """The run's parameters, as the "started" sample recorded them."""
    return next((e.get("parameters", {}) for e in events if e["type"] == "sample"
                 and e.get("condition") == "started"), {})


def failover_time(events, fault, what=("write",), node=None):
    """Seconds from the fault's effect to the first acknowledged operation invoked after it; None if none came."""
    if fault["effect"] is None:
        return None
    after = [op["completed"] for op in ops(events, what, "ok")
             if op["invoked"] >= fault["effect"] and (node is None or op["node"] == node)]
    return round(min(after) - fault["effect"], 3) if after else None


def timeline(events, series, *, start=0.0, end=None):
    """Per second from start: for each name, the operations its predicate holds for, by when they completed."""
    done = [op for op in ops(events) if op["completed"] is not None and op["completed"] >= start]
    last = max([op["completed"] for op in done] + [end or start])
    counts = {name: [0] * (int(last - start) + 1) for name in series}
    for op in done:
        for name, holds in series.items():
            counts[name][int(op["completed"] - start)] += bool(holds(op))
    return counts


def _seen(op):
    """(value,) a read tells about the user's writes ((None,): the session is gone), or None when it tells nothing
    (it failed some other way, or its outcome is unknown)."""
    if op["outcome"] == "ok":
        return (op["value"],)
    if op["refusal"] == GONE:
        return (None,)
    return None


def _missing(written, read):
    """Whether a read of `read` lacks the write of `written`: gone, a lower counter, or a list without it."""
    if read is None:
        return True
    if isinstance(read, list):
        return written not in read
    return written > read
