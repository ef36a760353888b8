"""The lost-message race, staged deterministically on a real database.

Run as `python -m tests.held_transaction` with DATABASE_URL set; prints one
JSON object of what a poller following its cursor saw. Transaction A posts
and stays open; B posts to the same room from another thread; a poll runs in
between; then A commits. Django's connections are per thread, so each
thread has its own transaction.

Without a room lock, B commits while A is open, the poll returns B, the
cursor passes A's lower id, and A is never seen. With the lock B waits for
A, and the poll in between sees neither.
"""

import json
import threading
import uuid


def b_waits_for_a():
    """True while another connection of this database waits on a lock (PostgreSQL)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0


def post_in_thread(name, author, *, hold=None, posted=None):
    """Post `name` to the room in a new thread; with `hold`, keep its transaction open until it is set."""
    from django.db import connection, transaction

    from chat.services import post_message

    def run():
        try:
            with transaction.atomic():
                post_message(room_slug="lobby", author=author, text=name, client_id=uuid.uuid4())
                if posted:
                    posted.set()
                if hold:
                    hold.wait(60)
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    return thread


def main():
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from chat.services import messages_after
    from deploy.cluster import wait_for

    call_command("migrate", verbosity=0)
    ada = get_user_model().objects.create_user("ada")
    bob = get_user_model().objects.create_user("bob")
    post_in_thread("before", ada).join(60)
    cursor = messages_after(room_slug="lobby", after=None, limit=1)[-1].id

    a_posted, release_a = threading.Event(), threading.Event()
    a = post_in_thread("A", ada, hold=release_a, posted=a_posted)
    try:
        assert a_posted.wait(60), "A did not post within 60 s"
        b = post_in_thread("B", bob)
        wait_for(lambda: not b.is_alive() or b_waits_for_a(), timeout=60, what="B to commit or wait for A")
        b_waited = b.is_alive()
        # The poll in between, as a client following its cursor would make it.
        first_poll = messages_after(room_slug="lobby", after=cursor, limit=50)
        release_a.set()
        a.join(60)
        b.join(60)
        seen = [m.text for m in first_poll]
        cursor = first_poll[-1].id if first_poll else cursor
        while page := messages_after(room_slug="lobby", after=cursor, limit=50):
            seen += [m.text for m in page]
            cursor = page[-1].id
    finally:
        release_a.set()
    print(json.dumps({
        "b_waited_for_a": b_waited,
        "first_poll": [m.text for m in first_poll],
        "seen": seen,
        "cursor": cursor,
    }))


if __name__ == "__main__":
    main()
