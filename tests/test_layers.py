"""The layering holds: site/ imports no app, labcore imports neither apps nor site/, no package imports upwards,
loadtest and control reach deploy through deploy.cluster only, and no import cycle anywhere (acyclic_siblings);
and loadtest/ holds one copy of each idea (pylint's duplicate-code check).

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


def duplicates(folder):
    """pylint's duplicate-code report over a folder: 10 or more similar lines in two places (R0801), or ""."""
    pylint = Path(sys.executable).with_name("pylint")
    done = subprocess.run([str(pylint), "--disable=all", "--enable=duplicate-code", "--min-similarity-lines=10",
                           "--score=n", str(folder)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode in (0, 8), done.stdout[-2000:] + done.stderr[-2000:]  # 8: a refactor message, R0801
    return done.stdout.strip()


def test_loadtest_has_no_duplicated_code():
    """One client, one recorder, one table model, one page writer: no ten lines of loadtest/ are written twice."""
    found = duplicates("loadtest")
    assert not found, found


def test_the_duplicate_check_finds_a_copied_function(tmp_path):
    """The check above can fail: a package whose two modules share a function of ten lines is reported."""
    body = "\n".join(f"    total = total * {n} + len(str(value))" for n in range(12))
    package = tmp_path / "copied"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("one", "two"):
        (package / f"{name}.py").write_text(f"def {name}(value):\n    total = 0\n{body}\n    return total\n")
    assert "Similar lines in 2 files" in duplicates(package)
