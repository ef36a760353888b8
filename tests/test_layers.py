"""The layering holds: site/ imports no app, labcore imports neither apps nor site/, no package imports upwards,
loadtest and control reach deploy through deploy.cluster only, and no import cycle anywhere (acyclic_siblings).

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


def test_loadtest_and_control_are_kept_from_every_deploy_module_but_the_door():
    """The forbidden contract lists modules by name: a new module of deploy/ must join it."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (door,) = [c for c in contracts if c["name"] == "loadtest and control reach deploy through deploy.cluster only"]
    deploy = ROOT / "deploy"
    modules = {f"deploy.{path.stem}" for path in deploy.glob("*.py") if path.stem not in ("__init__", "cluster")}
    packages = {f"deploy.{path.parent.name}" for path in deploy.glob("*/__init__.py")}
    assert set(door["forbidden_modules"]) == modules | packages
