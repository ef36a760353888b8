"""The live progress line: rewritten in place on a terminal, plain lines elsewhere."""

import io

from loadtest.harness.progress import Progress


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_on_a_terminal_one_line_is_rewritten_in_place_with_the_scenario_and_the_time_left():
    screen = Terminal()
    progress = Progress(["redis", "postgres"], 120, stream=screen)
    progress(0, "redis", "starting the cluster")
    progress(0, "redis", "partition")
    progress.done()
    written = screen.getvalue()
    assert written.count("\r") == 2 and written.endswith("\n") and written.count("\n") == 1
    assert "[1/2] redis: partition (about 4.0 min left in all)" in written


def test_in_a_log_each_scenario_gets_a_plain_line_and_steps_within_one_are_not_repeated_at_once():
    log = io.StringIO()
    progress = Progress(["redis", "postgres"], 30, stream=log)
    progress(0, "redis", "starting the cluster")
    progress(0, "redis", "1 s of 20")
    progress.add(60)
    progress(1, "postgres", "starting the cluster")
    progress.done()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split(":")[0] for line in lines] == ["[1/2] redis", "[2/2] postgres"]
    assert lines[1].endswith("(about 2.0 min left in all)"), "the added minute counts"
