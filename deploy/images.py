"""`python -m deploy images`: the lab's images, built here from Debian's packages and PyPI's wheels.

Three images, each rebuilt only when something it is made from changed:

- BASE_IMAGE (deploy/stack.py), Debian 13 "trixie" made by mmdebstrap from
  Debian's mirror and loaded with `docker import`: Python 3.13, HAProxy,
  Redis and PostgreSQL, which the stack's services run. No registry
  serves it; it is kept while its package list is the same (a label).
- the Dockerfile's `site` and `loadgen` targets on top of it
  (`--build-arg BASE_IMAGE=`), the project and its dependencies at the
  versions constraints.txt pins. The wheels are downloaded on this
  machine into wheels/ and the build installs from there alone
  (`--no-index`): the build needs no index, only what pip here can reach.
  With nothing changed, Docker's layer cache makes a rebuild a matter of
  seconds.

dockerd is started if none runs (deploy/engine.py), and recorded, so that
`python -m deploy down` stops it again.
"""

import hashlib
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from deploy import engine, stack
from deploy.engine import docker
from deploy.errors import DeployError
from deploy.processes import require
from deploy.record import ROOT

SUITE = "trixie"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "haproxy", "redis-server", "postgresql", "passwd", "ca-certificates")
# Leave out what no service reads, to keep the image small.
EXCLUDED = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
WHEELS = ROOT / "wheels"
PYTHON = "313"  # the base image's Python, for the wheels
PLATFORMS = ("manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_28_x86_64", "manylinux_2_34_x86_64",
             "manylinux_2_39_x86_64", "linux_x86_64")
LABEL = "org.stateful-lab.packages"


def build(*, say=print):
    """Build (or find up to date) the base, site and loadgen images; return {image: size in bytes}."""
    engine.ensure(swarm=False)
    started = time.monotonic()
    base_image(say=say)
    download_wheels(say=say)
    for target, image in (("site", stack.SITE_IMAGE), ("loadgen", stack.LOADGEN_IMAGE)):
        say(f"building {image} (target {target})")
        done = subprocess.run(
            [require("docker", "docker.io"), "build", "--target", target, "--tag", image,
             "--build-arg", f"BASE_IMAGE={stack.BASE_IMAGE}", "--build-arg", "PIP_OPTIONS=--no-index", str(ROOT)],
            capture_output=True, text=True, timeout=3600, env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin"},
        )
        if done.returncode:
            raise DeployError(f"docker build --target {target} failed: {(done.stderr or done.stdout)[-1500:]}")
    say(f"images ready in {time.monotonic() - started:.0f} s")
    return sizes()


def sizes():
    return {image: int(docker("image", "inspect", "--format", "{{.Size}}", image).stdout)
            for image in (stack.BASE_IMAGE, stack.SITE_IMAGE, stack.LOADGEN_IMAGE)}


def recipe():
    """What the base image is made from, as a short digest (its label): a change means a new image."""
    return hashlib.sha256(repr((SUITE, MIRROR, PACKAGES, EXCLUDED)).encode()).hexdigest()[:16]


def base_image(*, say=print):
    """Make BASE_IMAGE with mmdebstrap and `docker import`, unless one of the same recipe is there."""
    found = docker("image", "inspect", "--format", f'{{{{index .Config.Labels "{LABEL}"}}}}', stack.BASE_IMAGE,
                   check=False)
    if found.returncode == 0 and found.stdout.strip() == recipe():
        say(f"{stack.BASE_IMAGE} is up to date")
        return
    say(f"making {stack.BASE_IMAGE} from Debian {SUITE} (mmdebstrap)")
    strap = subprocess.Popen(
        [require("mmdebstrap", "mmdebstrap"), "--variant=minbase", "--quiet", f"--include={','.join(PACKAGES)}",
         *(f"--dpkgopt=path-exclude={path}" for path in EXCLUDED), "--format=tar", SUITE, "-", MIRROR],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    imported = subprocess.run(
        [require("docker", "docker.io"), "import", "--change", f"LABEL {LABEL}={recipe()}",
         "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
         "--change", 'CMD ["/bin/bash"]', "-", stack.BASE_IMAGE],
        stdin=strap.stdout, capture_output=True, text=True, timeout=3600)
    strap.stdout.close()
    errors = strap.stderr.read().decode(errors="replace")
    if strap.wait(timeout=60) or imported.returncode:
        raise DeployError(f"making {stack.BASE_IMAGE} failed: {(errors + imported.stderr)[-1500:]}")


def download_wheels(*, say=print):
    """The project's wheel and every dependency's, for the base image's Python, at the pinned versions."""
    say(f"wheels for Python {PYTHON[0]}.{PYTHON[1:]} into {WHEELS}")
    pip = [sys.executable, "-m", "pip", "--quiet"]
    with tempfile.TemporaryDirectory() as scratch:
        # The project's own wheel only to learn its dependencies: the build installs the sources it copies,
        # and wheels/ keeps the same files from one run to the next (Docker's cache of the COPY holds).
        _pip(pip + ["wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", scratch, str(ROOT)])
        (project,) = Path(scratch).glob("stateful_lab-*.whl")
        _pip(pip + ["download", "--dest", scratch, "--only-binary=:all:", "--python-version", PYTHON,
                    "--implementation", "cp", "--abi", f"cp{PYTHON}", "--abi", "abi3", "--abi", "none",
                    *(part for platform in PLATFORMS for part in ("--platform", platform)),
                    "--constraint", str(ROOT / "constraints.txt"), str(project), "setuptools"])
        for wheel in Path(scratch).glob("*.whl"):
            if wheel != project and not (WHEELS / wheel.name).exists():
                shutil.copy2(wheel, WHEELS / wheel.name)


def _pip(argv):
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    if done.returncode:
        raise DeployError(f"pip {argv[4]} failed: {done.stderr.strip()[-1500:]}")
