"""Checkers for socket users' histories (socket_client.py): per message and per user, from the history alone.

What they assume: a user is a *member* of the room from its first
successful `connect` on, unless the run's parameters name it a leaver
(`"leavers"`: users who never reconnect, there to show ghost presence);
a message is *acknowledged* when its `post` op is ok (its value has the
id); a member should hold every message acknowledged after it joined
(posts invoked after its first connect completed). A `receive` op's value
says whether the client held it (`held`: took it into its chain, or
showed it without resume) and on which of the user's connections it came
(`connection`).
"""

from collections import Counter, defaultdict

from loadtest.harness.analysis import percentile
from loadtest.harness.checkers import ops, parameters

GOING_AWAY = 1001


def acknowledged(events):
    """{message id: its post op} of every acknowledged post."""
    return {op["value"]["id"]: op for op in ops(events, "post", "ok")}


def members(events):
    """{user: when it first joined (its first connect completed)}, leavers left out."""
    leavers = set(parameters(events).get("leavers", ()))
    joined = {}
    for op in ops(events, "connect", "ok"):
        if op["who"] not in leavers:
            joined.setdefault(op["who"], op["completed"])
    return joined


def held(events):
    """{user: Counter of the message ids the user held}."""
    found = defaultdict(Counter)
    for op in ops(events, "receive"):
        if op["value"].get("held"):
            found[op["who"]][op["value"]["id"]] += 1
    return found


def undelivered(events):
    """[(message id, member)] of acknowledged messages a member should hold and never did."""
    got, joined = held(events), members(events)
    return sorted((message, user) for message, post in acknowledged(events).items()
                  for user, since in joined.items() if post["invoked"] >= since and not got[user][message])


def delivered_twice(events):
    """[(message id, user)] of messages a user held twice, or got twice on one connection (at most once per socket
    is the server's promise; a message got again after a resume but not held is no duplicate)."""
    twice = {(message, user) for user, counts in held(events).items() for message, n in counts.items() if n > 1}
    per_socket = Counter((op["who"], op["value"].get("connection"), op["value"]["id"]) for op in ops(events, "receive"))
    twice |= {(message, user) for (user, _, message), n in per_socket.items() if n > 1}
    return sorted(twice)


def room_split(events):
    """[(author, member)] pairs where the member, who joined before the author posted, got none of the author's
    acknowledged messages at all: the room is split between them."""
    joined = members(events)
    got = defaultdict(set)
    for op in ops(events, "receive"):
        got[op["who"]].add(op["value"]["id"])
    by_author = defaultdict(list)
    for message, post in acknowledged(events).items():
        by_author[post["who"]].append((message, post["invoked"]))
    return sorted((author, user) for author, posts in by_author.items() for user, since in joined.items()
                  if user != author and any(at >= since for _, at in posts)
                  and not got[user] & {message for message, at in posts if at >= since})


def drops(events):
    """The disconnects the server made (or the connection broke): not the client's own closes."""
    return [op for op in ops(events, "disconnect") if op["value"]["by"] == "server"]


def close_codes(events):
    return dict(Counter(str(op["value"]["code"]) for op in drops(events)))


def reconnect_times(events):
    """Seconds from each member's dropped socket to its next open one; None for a drop never followed by one."""
    leavers = set(parameters(events).get("leavers", ()))
    opened = defaultdict(list)
    for op in ops(events, "connect", "ok"):
        opened[op["who"]].append(op["completed"])
    times = []
    for drop in drops(events):
        if drop["who"] in leavers:
            continue
        after = [at for at in opened[drop["who"]] if at >= drop["completed"]]
        times.append(round(min(after) - drop["completed"], 3) if after else None)
    return times


def ghost_seconds(events):
    """{leaver: seconds another member was still shown it online after its socket dropped}.

    For each member who was shown the leaver online when it dropped, until
    that member's first presence frame without it (the end of the history
    when none came); 0 when nobody was shown it then.
    """
    leavers = parameters(events).get("leavers", ())
    shown = defaultdict(list)  # observer -> [(at, online)]
    for op in ops(events, "presence-read", "ok"):
        shown[op["who"]].append((op["completed"], op["value"]))
    end = max((e.get("completed") or e.get("at") or e.get("sent") or 0 for e in events), default=0)
    ghosts = {}
    for leaver in leavers:
        dropped = [op["completed"] for op in drops(events) if op["who"] == leaver]
        if not dropped:
            continue
        at, longest = dropped[0], 0.0
        for observer, frames in shown.items():
            if observer in leavers:
                continue
            before = [online for when, online in frames if when <= at]
            if not before or leaver not in before[-1]:
                continue
            cleared = next((when for when, online in frames if when > at and leaver not in online), end)
            longest = max(longest, cleared - at)
        ghosts[leaver] = round(longest, 3)
    return ghosts


def figures(events):
    """Every figure of one scenario, as the report, the verdict and the docs read them."""
    reconnects = reconnect_times(events)
    reconnected = [seconds for seconds in reconnects if seconds is not None]  # a drop never followed: no time
    dropped = drops(events)
    missing = undelivered(events)
    ghosts = ghost_seconds(events)
    return {
        "acknowledged": len(acknowledged(events)),
        "members": len(members(events)),
        "dropped": len(dropped),
        "close_codes": close_codes(events),
        "going_away_pct": round(100 * sum(op["value"]["code"] == GOING_AWAY for op in dropped) / len(dropped), 1)
        if dropped else None,
        "reconnect_p50": percentile(reconnected, 0.5),
        "reconnect_p99": percentile(reconnected, 0.99),
        "never_reconnected": sum(t is None for t in reconnects),
        "undelivered_pairs": len(missing),
        "undelivered_messages": len({message for message, _ in missing}),
        "delivered_twice": len(delivered_twice(events)),
        "room_split_pairs": len(room_split(events)),
        "ghost_seconds": max(ghosts.values()) if ghosts else None,
        "resumes": sum(1 for op in ops(events, "disconnect") if op["value"]["by"] == "client"),
    }
