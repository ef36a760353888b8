"""The rolling restart's hypothesis: what the everyday deploy costs each way of keeping sessions.

`python -m loadtest --faults rolling-restart` stops each instance in turn
gracefully (out of HAProxy, its requests finished, SIGTERM) and starts it
again before the next (loadtest/harness/nemesis.py's rolling_restart). No
request needs to fail, yet sessions in process memory die with their
process: behind sticky, every user of a restarted instance loses the
login, and since every instance restarts once, about every user does
(behind round robin, memory sessions are lost on the next request anyway).
A shared store outlives every instance: nobody loses a login.
"""

from labcore import registry
from loadtest.harness.verdict import Check

# Users logged in during the warm-up, before the first restart; a user who lost the login and logged in again at
# an instance already restarted keeps it, so "about all" is not all: 80 % or more.
ABOUT_ALL_PCT = 80


def hypothesis(configs):
    """One check per configuration, on the kill experiment's figures of it (harness/analysis.py's summarise)."""
    checks = []
    for config in configs:
        if registry.SESSION_STORES[config.sessions].survives_instance_death:
            checks.append(Check(config.name, "users who lost their login: none, the store outlives every instance",
                                "users_lost_session", 0, 0))
        else:
            checks.append(Check(config.name, "users who lost their login: about all, each instance restarted once "
                                "(%)", "users_lost_session_pct", ABOUT_ALL_PCT, 100))
    return checks
