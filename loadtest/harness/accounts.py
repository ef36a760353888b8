"""The load's users: made beforehand in the cluster's database, then logged in over HTTP like anyone.

The site allows SIGNUP_MAX_PER_ADDRESS sign-ups per client address, and
every simulated user comes from this machine. Signing them up over HTTP
would meet that limit; lifting it would open it to every process here. So
the load never signs up: its users are made with deploy.add_users, which
needs the cluster's state folder, and each logs in with PASSWORD.
"""

import math
import secrets

from deploy import cluster as deploy

PASSWORD = "load-test-password-1"


def prepare(count, *, state_dir, prefix=None):
    """Make `count` users in the cluster in state_dir; return their names, unique to this call."""
    prefix = prefix or f"l{secrets.token_hex(3)}x"
    names = [f"{prefix}{n}" for n in range(count)]
    deploy.add_users(names, PASSWORD, state_dir=state_dir)
    return names


def for_locust(*, users, processes, run_time, stay, state_dir):
    """Make the users a Locust run needs; return the journeys' LOADTEST_ACCOUNTS ("prefix,per process").

    Any one process may run every user (Locust balances them as it likes),
    and with a turning-over population (stay: the shortest stay in seconds,
    or None) each user's place takes a new user at most every `stay`.
    """
    prefix = f"l{secrets.token_hex(3)}"
    per_process = users * (1 + (math.ceil(run_time / stay) if stay else 0))
    deploy.add_users([locust_name(prefix, worker, n) for worker in range(processes) for n in range(per_process)],
                     PASSWORD, state_dir=state_dir)
    return f"{prefix},{per_process}"


def locust_name(prefix, worker, number):
    """The name of a Locust process's `number`-th user (worker: the process's index in the run)."""
    return f"{prefix}w{worker}x{number}"
