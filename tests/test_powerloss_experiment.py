"""`python -m loadtest powerloss` (loadtest/experiments/powerloss.py): its figures from a hand-written history,
recheck of the docs' first run from its history, and (with --long) a tiny run against a real cluster."""

import json
import os
import shutil
from pathlib import Path

import pytest

from loadtest.__main__ import main
from loadtest.cli import chosen
from loadtest.experiments import powerloss
from loadtest.harness import history

RECORDED = Path(__file__).resolve().parent.parent / "docs" / "results" / "powerloss" / "round1"  # the docs' run


def op(who, what, invoked, completed, outcome="ok", value=None, refusal=None):
    return {"type": "op", "who": who, "what": what, "node": "app1", "invoked": invoked, "completed": completed,
            "outcome": outcome, "value": value, "refusal": refusal}


HISTORY = [
    op("ada", "login", 0.0, 0.1), op("bob", "login", 0.0, 0.1),
    op("ada", "write", 1.0, 1.01, value=1), op("ada", "write", 2.0, 2.03, value=2),
    op("bob", "write", 2.1, 2.12, value=1),
    {"type": "fault", "id": 9, "action": "powerloss", "target": "redis", "sent": 3.0, "effect": 3.5, "ended": None},
    op("ada", "read", 4.0, 4.01, value=1),  # lower than the acknowledged 2: that write is lost
    op("ada", "write", 4.1, 4.11, value=3),  # after the power loss: not counted
    op("ada", "final-read", 5.0, 5.01, value=3),
    op("bob", "final-read", 5.0, 5.01, outcome="failed", refusal="401"),  # the session is gone
]


def test_figures_count_the_writes_acknowledged_before_the_power_loss_that_a_later_read_lacks():
    figures = powerloss.figures(HISTORY, "redis-everysec")
    assert (figures["acknowledged"], figures["lost"], figures["sessions_lost"]) == (3, 2, 1)
    assert figures["write_ms_median"] == 20.0 and figures["write_ms_p95"] == 20.0


def test_an_unknown_setting_is_refused_naming_the_settings():
    with pytest.raises(ValueError, match="choose from: redis-none, redis-everysec"):
        chosen(["redis-sometimes"], tuple(powerloss.SETTINGS))


def test_recheck_of_a_recorded_run_reproduces_its_figures_exactly(tmp_path, capsys):
    shutil.copy(RECORDED / history.FILE, tmp_path)
    assert main(["recheck", str(tmp_path)]) == 0
    own = json.loads((RECORDED / "powerloss.json").read_text())
    assert json.loads((tmp_path / "powerloss.json").read_text()) == own
    assert [r["setting"] for r in own] == list(powerloss.SETTINGS)
    assert "report: " in capsys.readouterr().out


@pytest.mark.long
@pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists("/dev/fuse"), reason="FUSE mounts need root")
def test_a_tiny_run_keeps_every_write_with_appendfsync_always(tmp_path):
    assert main(["powerloss", "--settings", "redis-always", "--seconds", "3", "--after", "2", "--users", "2",
                 "--out", str(tmp_path)]) == 0
    (result,) = json.loads((tmp_path / "powerloss.json").read_text())
    assert result["acknowledged"] > 0 and result["lost"] == 0
    assert not list(tmp_path.glob("clusters/*/logs/*.relay.log")), "a latency relay ran (up --no-relays)"
