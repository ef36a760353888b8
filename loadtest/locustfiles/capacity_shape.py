"""The capacity step's load shape: more users in fixed steps until the site gives.

Only the capacity run loads this module (`locust -f journeys.py,capacity_shape.py`),
with its steps and bounds as JSON in LOADTEST_CAPACITY (loadtest/experiments/capacity.py).
Each step ramps to its users over `ramp` seconds and holds them for `hold`;
at the end of a hold the shape reads Locust's own statistics for that hold
and stops the run at the second hold in a row whose p99 passed the bound or
whose failures passed theirs, so a run costs only the steps it needs. The
figures in the report come from the recorder, not from here: Locust's
statistics count a request when it ends, the recorder when it started, so
the two may disagree on a step near the bound; the recorder decides.

With several processes (`--processes`) the statistics this shape reads are
the master's, which hear from each worker every WORKER_REPORT_INTERVAL
(3 s): Locust's totals at the end of a ramp still lack up to 3 s of its
requests, the costliest of the step (new users log in during the ramp).
Taken then, the hold's p99 was the ramp's: 280 ms where the recorder
measured 68 ms over the same hold, and runs stopped after two or three
steps. So with workers the hold's snapshot waits one report interval more
(at most half the hold; the shape is asked about once a second, so a hold
of 2 s or more still gets its snapshot).
"""

import json
import os

from locust import LoadTestShape
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner
from locust.stats import calculate_response_time_percentile, diff_response_time_dicts

from loadtest.experiments.capacity import users_at
from loadtest.harness.recorder import recorder


class CapacitySteps(LoadTestShape):
    def __init__(self):
        super().__init__()
        self.plan = json.loads(os.environ["LOADTEST_CAPACITY"])
        self.step = -1
        self.snapshot = None  # Locust's totals when the current hold began
        self.over = 0  # holds over the bounds in a row

    def tick(self):
        plan = self.plan
        period = plan["ramp"] + plan["hold"]
        step = int(self.get_run_time() // period)
        if step != self.step:
            if self.step >= 0:
                self.over = self.over + 1 if self._over_bounds() else 0
            if self.over >= 2:
                return None
            self.step = step
            self.snapshot = None
        users = users_at(step, start_users=plan["start_users"], step_fraction=plan["step"])
        if users > plan["max_users"]:
            return None
        if len(recorder.steps) <= step:
            recorder.step(users)
        if self.snapshot is None and self.get_run_time() - step * period >= plan["ramp"] + self._report_lag():
            self.snapshot = self._totals()
        previous = self.get_current_user_count()
        return users, max(1.0, abs(users - previous) / plan["ramp"])

    def _report_lag(self):
        """Seconds until Locust's totals hold every request made before now (see the module's docstring)."""
        if not isinstance(self.runner, MasterRunner):
            return 0.0
        return min(WORKER_REPORT_INTERVAL + 0.5, self.plan["hold"] / 2)

    def _totals(self):
        total = self.runner.stats.total
        return total.num_requests, total.num_failures, dict(total.response_times)

    def _over_bounds(self):
        if self.snapshot is None:
            return False
        requests, failures, times = self._totals()
        old_requests, old_failures, old_times = self.snapshot
        requests -= old_requests
        if requests <= 0:
            return True
        p99 = calculate_response_time_percentile(diff_response_time_dicts(times, old_times), requests, 0.99)
        return p99 > self.plan["p99_ms"] or 100 * (failures - old_failures) / requests > self.plan["failed_pct"]
