"""The control room's targets, measured: its own CPU with the page open (the topology updating once a second),
and the site's poll-mix throughput with the page open and closed, in alternating rounds.

Run from the checkout, with nothing else running: .venv/bin/python scripts/control_cpu.py ROUNDS SECONDS
(docs/control-room.md gives the figures of `3 30`).
"""
import json
import sys
import tempfile
import time
from pathlib import Path

import psutil
from playwright.sync_api import sync_playwright

sys.path.insert(0, ".")
from loadtest.bench.wrk import POLL_MIX, log_in, run_wrk  # noqa: E402
from tests.controlroom import ControlRoom  # noqa: E402
from tests.test_browser import CHROMIUM, FLAGS  # noqa: E402

rounds, seconds = int(sys.argv[1]), float(sys.argv[2])
state = Path(tempfile.mkdtemp(prefix="lab-ctlbench-")) / "state"
room = ControlRoom(state, Path(tempfile.mkdtemp(prefix="lab-ctlbench-runs-")))
proc = psutil.Process(room.process.pid)
script = Path(tempfile.mkdtemp()) / "poll.lua"
script.write_text(POLL_MIX)
results = {"open": {"cpu_pct": [], "rps": []}, "closed": {"cpu_pct": [], "rps": []}}
try:
    assert room.act(action="up", options={"instances": 3, "sessions": "redis", "presence": "redis",
                                          "lb": "roundrobin"}).status_code == 202
    room.wait_serving(3)
    url = f"http://127.0.0.1:{room.state()['cluster']['port']}"
    env = log_in(url)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        for r in range(rounds):
            for mode in (("open", "closed") if r % 2 == 0 else ("closed", "open")):
                page = None
                if mode == "open":
                    page = browser.new_page()
                    page.goto(room.url + "/")
                    time.sleep(2)
                before, t0 = proc.cpu_times(), time.monotonic()
                time.sleep(seconds)
                after, dt = proc.cpu_times(), time.monotonic() - t0
                cpu = 100 * (sum(after[:4]) - sum(before[:4])) / dt  # user, system and its children's
                wrk = run_wrk(url, script, env, int(seconds), 8)
                results[mode]["cpu_pct"].append(round(cpu, 2))
                results[mode]["rps"].append(round(wrk["rps"]))
                print(r, mode, round(cpu, 2), round(wrk["rps"]), flush=True)
                if page:
                    page.close()
        browser.close()
finally:
    room.act(action="down")
    time.sleep(3)
    room.process.terminate()
print(json.dumps(results))
