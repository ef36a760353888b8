"""After a run: is every acknowledged message in the database exactly once,
and did every user's polls deliver each message of its room exactly once?

The auditor reads the rooms over the API like any client, with a bearer
token, which works on every instance whatever the session store. The
token comes from deploy (deploy.cluster.api_token, with the cluster's state
folder), for a user that has no password: the auditor never logs in, so
the login throttle cannot refuse it, whatever the load's users or anyone
else on this machine did from its address.
"""

from collections import Counter

from deploy import cluster as deploy
from loadtest.harness.site import Site, messages_path

# A name the sign-up form refuses (a space): nobody can take it over HTTP first.
AUDITOR = "lab auditor"


def audit_messages(url, acknowledged, pollers, *, state_dir):
    """Return {"acknowledged", "stored", "lost", "duplicated", ..., "pollers": audit_pollers(...)}.

    url: where to read (HAProxy); state_dir: the cluster's, for the auditor's token.
    """
    token = deploy.api_token(AUDITOR, state_dir=state_dir)
    wanted = Counter(client_id for client_id, _ in acknowledged)
    rooms = sorted({room for _, room in acknowledged} | {poller["room"] for poller in pollers.values()})
    stored = Counter()
    stored_ids = {}
    for room in rooms:
        messages = list(_all_messages(url, room, token))
        stored.update(message["client_id"] for message in messages)
        stored_ids[room] = [message["id"] for message in messages]
    lost = [client_id for client_id in wanted if stored[client_id] == 0]
    duplicated = [client_id for client_id in wanted if stored[client_id] > 1]
    return {
        "acknowledged": len(wanted),
        "stored": sum(stored.values()),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "lost_ids": lost[:20],
        "duplicated_ids": duplicated[:20],
        "pollers": audit_pollers(stored_ids, pollers),
    }


def audit_pollers(stored_ids, pollers):
    """Compare what each user's polls received with what its room holds.

    A user followed its room from its first cursor (exclusive) to its last
    (inclusive), so every message stored there with an id in that range
    should have reached it exactly once. Missed: expected and never
    received; seen twice: received more than once. The database is read
    after the run, so a message that committed after a poll had moved the
    cursor past its id (the lost-update race on PostgreSQL) shows as missed.
    """
    users = expected_total = missed = seen_twice = 0
    examples = []
    for username, poller in sorted(pollers.items()):
        first, last = poller["first_cursor"], poller["last_cursor"]
        if first is None:
            continue
        users += 1
        seen = {int(message_id): count for message_id, count in poller["seen"].items()}
        expected = [i for i in stored_ids.get(poller["room"], ()) if first < i <= last]
        not_seen = [i for i in expected if not seen.get(i)]
        twice = sorted(i for i, count in seen.items() if count > 1)
        expected_total += len(expected)
        missed += len(not_seen)
        seen_twice += len(twice)
        if (not_seen or twice) and len(examples) < 20:
            examples.append({"user": username, "room": poller["room"], "missed": not_seen[:10],
                             "seen_twice": twice[:10]})
    return {"users": users, "expected": expected_total, "missed": missed, "seen_twice": seen_twice,
            "examples": examples}


def _all_messages(url, room, token):
    auditor = Site(url, token=token)
    after = 0
    for _ in range(100_000):
        answer = auditor.request("GET", messages_path(room, after=after, limit=200))
        answer.raise_for_status()
        page = answer.json()
        if not page["messages"]:
            return
        yield from page["messages"]
        after = page["cursor"]
