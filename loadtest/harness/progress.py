"""A live progress line: what runs, scenario k of n, and about how long is left in all.

On a terminal it is one line on stderr, rewritten in place; elsewhere (a
pipe, a CI log) it is plain lines: one when a scenario begins, then at
most one every EVERY seconds, so a log stays readable. The time left is the estimate given at the start (seconds per
scenario), less the time gone, plus what add() says took longer.
"""

import shutil
import sys
import time

EVERY = 10  # seconds between two plain lines about the same scenario


class Progress:
    """progress(index, scenario, what): scenario index + 1 of `names` (a name, or anything with .name) does `what`."""

    def __init__(self, names, seconds_each, *, stream=None):
        self.count = len(names)
        self.total = seconds_each * self.count
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.started = time.monotonic()
        self._last = (None, 0.0)  # the last plain line's scenario, and when it was written
        self._width = 0

    def __call__(self, index, scenario, what):
        left = max(0.0, self.total - (time.monotonic() - self.started))
        line = (f"[{index + 1}/{self.count}] {getattr(scenario, 'name', scenario)}: {what} "
                f"(about {_minutes(left)} left in all)")
        if self.tty:  # cut to the terminal's width: a wrapped line cannot be rewritten in place
            line = line[:shutil.get_terminal_size().columns - 1]
            self._width = max(self._width, len(line))
            print(f"\r{line:<{self._width}}", end="", file=self.stream, flush=True)
            return
        if index != self._last[0] or time.monotonic() - self._last[1] >= EVERY:
            print(line, file=self.stream, flush=True)
            self._last = (index, time.monotonic())

    def add(self, seconds):
        """A step took `seconds` beyond the estimate (a capacity step): the time left grows by as much."""
        self.total += seconds

    def done(self):
        """End the line on a terminal, so what is printed next starts on a line of its own."""
        if self.tty:
            print(file=self.stream, flush=True)


def _minutes(seconds):
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
