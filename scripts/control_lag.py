"""Seconds from a fault's end (the terminal command's return, or the action's 202) to /api/state showing it.

Run from the checkout: .venv/bin/python scripts/control_lag.py (docs/control-room.md gives its figures).
"""
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, ".")
from tests.controlroom import ControlRoom  # noqa: E402

state = Path(tempfile.mkdtemp(prefix="lab-ctllag-")) / "state"
room = ControlRoom(state, Path(tempfile.mkdtemp(prefix="lab-ctllag-runs-")))

def shown(name, want):
    began = time.monotonic()
    while room.node(name)["state"] != want:
        assert time.monotonic() - began < 30
        time.sleep(0.05)
    return round(time.monotonic() - began, 2)

try:
    assert room.act(action="up", options={"instances": 3, "sessions": "redis", "presence": "redis"}).status_code == 202
    room.wait_serving(3)
    terminal, action = [], []
    for _ in range(3):
        subprocess.run([sys.executable, "-m", "deploy", "--state-dir", str(state), "kill", "app1"], check=True,
                       capture_output=True)
        terminal.append(shown("app1", "down"))
        subprocess.run([sys.executable, "-m", "deploy", "--state-dir", str(state), "start", "app1"], check=True,
                       capture_output=True)
        terminal.append(shown("app1", "up"))
        assert room.act(action="kill", target="app2").status_code == 202
        action.append(shown("app2", "down"))
        assert room.act(action="start", target="app2").status_code == 202
        action.append(shown("app2", "up"))
    print("terminal", terminal)
    print("action", action)
finally:
    room.act(action="down")
    time.sleep(3)
    room.process.terminate()
