"""A session update whose database connection is cut, on a real PostgreSQL.

Run as `python -m tests.lost_connection` with DATABASE_URL set; prints what
saving the session raised. Another connection ends this one's backend
(pg_terminate_backend) between two saves, as a failover does: the update
must be a failed store (StoreUnavailable naming the database, a 503), not
Django's "session deleted meanwhile" (UpdateError, a 400).
"""

import django


def main():
    django.setup()
    from django.contrib.sessions.backends.base import UpdateError
    from django.core.management import call_command
    from django.db import connection, connections

    from labcore.sessions.db import SessionStore
    from labcore.stores import StoreUnavailable

    call_command("migrate", verbosity=0)
    session = SessionStore()
    session["counter"] = 1
    session.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    other = connections.create_connection("default")
    with other.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    other.close()
    session["counter"] = 2
    try:
        session.save()
        print("saved")
    except StoreUnavailable as failure:
        print("StoreUnavailable", failure.store)
    except UpdateError:
        print("UpdateError")


if __name__ == "__main__":
    main()
