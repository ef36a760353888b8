"""After a run: is every acknowledged message in the database exactly once?

The auditor reads the rooms over the API like any client, with a bearer
token, which works on every instance whatever the session store.
"""

import json
import secrets
import urllib.parse
import urllib.request
from collections import Counter
from http.cookiejar import CookieJar


def audit_messages(url, acknowledged):
    """Return {"acknowledged", "stored", "lost", "duplicated", "lost_ids"}."""
    token = _auditor_token(url)
    wanted = Counter(client_id for client_id, _ in acknowledged)
    rooms = sorted({room for _, room in acknowledged})
    stored = Counter()
    for room in rooms:
        for message in _all_messages(url, room, token):
            stored[message["client_id"]] += 1
    lost = [client_id for client_id in wanted if stored[client_id] == 0]
    duplicated = [client_id for client_id in wanted if stored[client_id] > 1]
    return {
        "acknowledged": len(wanted),
        "stored": sum(stored.values()),
        "lost": len(lost),
        "duplicated": len(duplicated),
        "lost_ids": lost[:20],
        "duplicated_ids": duplicated[:20],
    }


def _auditor_token(url):
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    username, password = f"auditor{secrets.token_hex(4)}", secrets.token_urlsafe(16)
    opener.open(f"{url}/accounts/signup/", timeout=10).read()
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    form = urllib.parse.urlencode({
        "username": username, "password1": password, "password2": password, "csrfmiddlewaretoken": csrf,
    }).encode()
    opener.open(f"{url}/accounts/signup/", data=form, timeout=10).read()
    body = json.dumps({"username": username, "password": password}).encode()
    request = urllib.request.Request(f"{url}/api/token", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)["token"]


def _all_messages(url, room, token):
    after = 0
    for _ in range(100_000):
        request = urllib.request.Request(
            f"{url}/api/rooms/{room}/messages?after={after}&limit=200",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            page = json.load(response)
        if not page["messages"]:
            return
        yield from page["messages"]
        after = page["cursor"]
