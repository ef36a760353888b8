"""The layering holds: site/ imports no app, labcore imports neither apps nor site/, no package imports upwards,
loadtest reaches deploy through deploy.cluster only, and no import cycle anywhere (acyclic_siblings).

The contracts are in pyproject.toml ([tool.importlinter]).
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]
    assert "0 broken" in done.stdout
