"""The container image recipe (Dockerfile) and the fault script, checked without a container engine.

Nothing here builds an image: hadolint lints the Dockerfile, the tests read
it for what the lab depends on (every COPY source exists and is in the
build context, the images run as a user other than root, gunicorn starts as
`python -m deploy` starts an instance), and the wheel that `pip install .`
makes in the image is built here to show it carries the templates and
static files. ShellCheck checks deploy/kubernetes/kill-a-pod.sh.
"""

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from deploy import web

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent


def instructions():
    """The Dockerfile as (stage, INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stage = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stage = rest.split()[-1]
        yield stage, word.upper(), rest.strip()


def test_hadolint_finds_nothing():
    done = subprocess.run([str(BIN / "hadolint"), "--format", "json", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, json.dumps(json.loads(done.stdout or "[]"), indent=1) + done.stderr


def test_every_copy_source_exists_and_is_in_the_build_context():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def in_context(path):
        # .dockerignore: the last matching pattern wins; `!` lets a path back in.
        kept = True
        for pattern in patterns:
            negated = pattern.startswith("!")
            pattern = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path, pattern + "/*"):
                kept = negated
        return kept

    copied = [rest for _, word, rest in instructions() if word == "COPY" and "--from=" not in rest]
    assert copied
    for rest in copied:
        *sources, _ = rest.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: no such file"
            assert in_context(source.rstrip("/")), f"COPY {source}: .dockerignore leaves it out"
            for path in (ROOT / source).rglob("*.py") if (ROOT / source).is_dir() else []:
                assert in_context(str(path.relative_to(ROOT))), f"{path} is left out of the image"


def test_the_build_stage_copies_every_package_pip_install_builds():
    # pyproject's packages, by the folder each top-level one lives in (labsite: site/): a package missing from
    # the build stage fails `pip install .` in the image, which only an image build would show.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {pyproject.get("package-dir", {}).get(name.split(".")[0], name.split(".")[0])
               for name in pyproject["packages"]}
    copied = {source.rstrip("/") for stage, word, rest in instructions() if stage == "build" and word == "COPY"
              for source in rest.split()[:-1]}
    assert folders - copied == set(), f"the Dockerfile's build stage does not COPY {sorted(folders - copied)}"


def test_the_images_run_as_a_user_other_than_root():
    users = {}
    for stage, word, rest in instructions():
        if word == "USER":
            users[stage] = rest
    for target in ("site", "loadgen"):
        user = users.get(target, "root").split(":")[0]
        assert user not in {"root", "0"}, f"target {target} runs as {user}"


def test_gunicorn_starts_as_deploy_starts_an_instance():
    (command,) = [json.loads(rest) for stage, word, rest in instructions() if stage == "site" and word == "CMD"]
    started = web.argv(web.DEFAULT, port=8000)
    assert command[:4] == ["python", "-m", "gunicorn", "labsite.wsgi"]
    for flag in ("--workers", "--threads", "--graceful-timeout", "--keep-alive"):
        value = command[command.index(flag) + 1]
        assert started[started.index(flag) + 1] == value, f"{flag} {value} differs from deploy/web.py"
    (entry,) = [json.loads(rest) for stage, word, rest in instructions()
                if stage == "loadgen" and word == "ENTRYPOINT"]
    assert entry == ["locust", "-f", "loadtest/locustfiles/journeys.py"]


def test_the_wheel_the_image_installs_carries_every_module_template_and_static_file(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path), str(ROOT)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = ["site", "labcore", "accounts", "chat", "maintenance", "deploy", "loadtest"]
    tracked = subprocess.run(["git", "ls-files", *packages], cwd=ROOT, capture_output=True, text=True,
                             check=True).stdout.split()
    data = [path for path in tracked if not path.startswith("deploy/kubernetes/")]
    assert data
    for path in data:  # every module and every file beside them
        installed = re.sub(r"^site/", "labsite/", path)
        assert installed in names, f"{path} is not in the wheel, so not in the image"


def test_shellcheck_finds_nothing_in_the_fault_script():
    script = ROOT / "deploy" / "kubernetes" / "kill-a-pod.sh"
    done = subprocess.run([str(BIN / "shellcheck"), str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout
    assert script.stat().st_mode & 0o111, "kill-a-pod.sh is not executable"


def test_the_fault_script_refuses_unknown_arguments_without_touching_anything():
    done = subprocess.run(["bash", str(ROOT / "deploy" / "kubernetes" / "kill-a-pod.sh"), "--everything"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "usage" in done.stderr
    assert shutil.which("kubectl") is None or "deleting" not in done.stdout
