"""Docker Engine for the lab: started when needed, kept off the namespace experiments, and put back as it was.

`ensure()` uses a running dockerd as it is. With none running it starts
Debian's dockerd (package docker.io) itself and records that it did, in
ENGINE_DIR/engine.json, with what it changed on the host; `release()`
undoes exactly that: it leaves the swarm if the lab initialised it, stops
the dockerd the lab started, and restores the host's iptables tables, IPv4
forwarding and network links as they were before.

Why the care: dockerd turns IPv4 forwarding on and sets the iptables FORWARD
policy to DROP. Here bridged traffic passes iptables (bridge-nf-call-iptables
is 1), so the namespace experiments' bridges (deploy/netns.py, 10.250.0.0/16)
would go silent. Before dockerd starts, the lab makes the chain DOCKER-USER,
which dockerd keeps and jumps to first, with ACCEPT rules for that range, and
checks them again once dockerd runs.

Every address Docker hands out is inside deploy/stack.py's POOL; the swarm
listens and advertises on loopback: a one-node swarm that reaches nothing
outside this machine.
"""

import ipaddress
import json
import re
import subprocess
from pathlib import Path

from deploy import netns, stack
from deploy.errors import DeployError
from deploy.processes import require, running, spawn, stop, wait_for, write_private
from deploy.record import ROOT, make_private_folder

ENGINE_DIR = ROOT / "state" / "docker"
RECORD = "engine.json"
KEPT_FLOWING = str(netns.SUBNETS)
FORWARDING = Path("/proc/sys/net/ipv4/ip_forward")
TABLES = ("filter", "nat")  # the iptables tables dockerd writes in
# The links dockerd makes: its bridges and the host ends of its containers' veths.
DOCKER_LINK = re.compile(r"docker0|docker_gwbridge|br-[0-9a-f]{12}|veth[0-9a-f]{7}")
SWARM_ADDRESS = "127.0.0.1"


def docker(*argv, check=True, timeout=120, **options):
    """Run the docker CLI; DeployError with its message if it fails and check."""
    done = subprocess.run([require("docker", "docker.io"), *argv], capture_output=True, text=True,
                          timeout=timeout, **options)
    if check and done.returncode:
        raise DeployError(f"docker {argv[0]} failed: {(done.stderr or done.stdout).strip()[-800:]}")
    return done


def answering():
    """True if a dockerd answers on the default socket."""
    return docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=30).returncode == 0


def load():
    try:
        return json.loads((ENGINE_DIR / RECORD).read_text())
    except FileNotFoundError:
        return {}


def _save(record):
    make_private_folder(ENGINE_DIR)
    write_private(ENGINE_DIR / RECORD, json.dumps(record, indent=2))


def daemon_config():
    """dockerd's configuration: every pool inside the lab's range, published ports on loopback only."""
    bridge = next(stack.DAEMON_POOL.subnets(new_prefix=24))
    return {
        "bip": f"{next(bridge.hosts())}/{bridge.prefixlen}",
        "default-address-pools": [{"base": str(stack.DAEMON_POOL), "size": 24}],
        "ip": "127.0.0.1",
        "storage-driver": "overlay2",
        "log-driver": "json-file",
        "log-opts": {"max-size": "10m", "max-file": "2"},
    }


def ensure(*, swarm):
    """A dockerd answering (started if none runs), and a swarm if `swarm`; return the engine record."""
    record = load()
    if not answering():
        if record.get("dockerd") and running(record["dockerd"]):
            raise DeployError("the dockerd the lab started does not answer; see "
                              f"{ENGINE_DIR / 'dockerd.log'}, then run: python -m deploy down")
        release()  # what an earlier start left (its dockerd died, the machine rebooted): undone first
        record = _start_dockerd()
    if swarm and docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip() != "active":
        _init_swarm()
        record["swarm"] = True
        _save(record)
    return record


def _start_dockerd():
    binary = require("dockerd", "docker.io")
    require("iptables", "iptables")
    make_private_folder(ENGINE_DIR)
    record = {"forwarding": FORWARDING.read_text().strip(), "tables": _tables(),
              "links": _links(), "swarm": False, "dockerd": {}}
    _save(record)  # before anything changes: `down` can undo a start that failed half-way
    try:
        _keep_namespaces_flowing()
        config = ENGINE_DIR / "daemon.json"
        write_private(config, json.dumps(daemon_config(), indent=2))
        record["dockerd"] = spawn([binary, "--config-file", str(config)], log_path=ENGINE_DIR / "dockerd.log")
        _save(record)
        wait_for(lambda: answering() or not running(record["dockerd"]), timeout=90, interval=1,
                 what="dockerd to answer")
        if not running(record["dockerd"]):
            raise DeployError(f"dockerd exited at start; see {ENGINE_DIR / 'dockerd.log'}")
        _keep_namespaces_flowing()
    except BaseException:
        release()
        raise
    return record


def _keep_namespaces_flowing():
    """ACCEPT the namespace experiments' range in DOCKER-USER, first in FORWARD, whatever the policy."""
    iptables = require("iptables", "iptables")
    if _iptables(iptables, "-n", "-L", "DOCKER-USER", check=False).returncode:
        _iptables(iptables, "-N", "DOCKER-USER")
    for rule in (["-s", KEPT_FLOWING, "-j", "ACCEPT"], ["-d", KEPT_FLOWING, "-j", "ACCEPT"]):
        if _iptables(iptables, "-C", "DOCKER-USER", *rule, check=False).returncode:
            _iptables(iptables, "-I", "DOCKER-USER", "1", *rule)
    if _iptables(iptables, "-C", "FORWARD", "-j", "DOCKER-USER", check=False).returncode:
        _iptables(iptables, "-I", "FORWARD", "1", "-j", "DOCKER-USER")


def forward_rules():
    """`iptables -S FORWARD` and `-S DOCKER-USER` now, as lines (what the tests and the docs look at)."""
    iptables = require("iptables", "iptables")
    return [line for chain in ("FORWARD", "DOCKER-USER")
            for line in _iptables(iptables, "-S", chain, check=False).stdout.splitlines()]


def _iptables(binary, *argv, check=True):
    done = subprocess.run([binary, "-w", "10", *argv], capture_output=True, text=True, timeout=30)
    if check and done.returncode:
        raise DeployError(f"iptables {' '.join(argv)} failed: {done.stderr.strip()}")
    return done


def _init_swarm():
    """A one-node swarm on loopback, its networks from the lab's pool, docker_gwbridge made first (in the pool,
    publishing on loopback)."""
    if docker("network", "inspect", "docker_gwbridge", check=False).returncode:
        docker("network", "create", "--subnet", str(stack.GWBRIDGE_SUBNET),
               "--opt", "com.docker.network.bridge.name=docker_gwbridge",
               "--opt", "com.docker.network.bridge.enable_icc=false",
               "--opt", "com.docker.network.bridge.enable_ip_masquerade=true",
               "--opt", "com.docker.network.bridge.host_binding_ipv4=127.0.0.1",
               "docker_gwbridge")
    docker("swarm", "init", "--advertise-addr", SWARM_ADDRESS, "--listen-addr", f"{SWARM_ADDRESS}:2377",
           "--default-addr-pool", str(stack.SWARM_POOL), "--default-addr-pool-mask-length", "24")


def pools():
    """Every subnet Docker's networks use now, as ip_networks (each must be inside stack.POOL)."""
    ids = docker("network", "ls", "-q").stdout.split()
    found = json.loads(docker("network", "inspect", *ids).stdout) if ids else []
    return [ipaddress.ip_network(block["Subnet"]) for network in found
            for block in (network.get("IPAM") or {}).get("Config") or [] if "Subnet" in block]


def release():
    """Undo what the lab did to this machine's Docker: the swarm it initialised, the dockerd it started and that
    daemon's marks on the host. Every step runs; the record goes last."""
    record = load()
    if not record:
        return False
    if record.get("swarm") and answering():
        docker("swarm", "leave", "--force", check=False)
    if "forwarding" in record:  # the lab started dockerd (or began to): stop it, undo its marks and the lab's
        if record["dockerd"] and answering():
            docker("network", "rm", "docker_gwbridge", check=False)
        if record["dockerd"]:
            stop(record["dockerd"], timeout=30)
        _restore(record)
    (ENGINE_DIR / RECORD).unlink(missing_ok=True)
    return True


def _restore(record):
    """Put back forwarding, remove the tables and chains dockerd added and the links it left."""
    FORWARDING.write_text(record["forwarding"] + "\n")
    for family, table in ((family, table) for family in ("ip", "ip6") for table in TABLES):
        if f"{family} {table}" not in record["tables"] and f"{family} {table}" in _tables():
            subprocess.run(["nft", "delete", "table", family, table], capture_output=True, timeout=30)
    iptables = require("iptables", "iptables")
    if "ip filter" in record["tables"]:
        # The table was there before: take out only what dockerd and the lab put in it.
        _iptables(iptables, "-P", "FORWARD", "ACCEPT", check=False)
        for line in _iptables(iptables, "-S", "FORWARD", check=False).stdout.splitlines():
            if "DOCKER" in line and line.startswith("-A "):
                _iptables(iptables, "-D", *line.split()[1:], check=False)
        for chain in ("DOCKER-USER", "DOCKER", "DOCKER-ISOLATION-STAGE-1", "DOCKER-ISOLATION-STAGE-2"):
            _iptables(iptables, "-F", chain, check=False)
            _iptables(iptables, "-X", chain, check=False)
    for link in _links():
        if link not in record["links"] and DOCKER_LINK.fullmatch(link):
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=30)


def _tables():
    listed = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, timeout=30).stdout
    return [line.removeprefix("table ").strip() for line in listed.splitlines() if line.startswith("table ")]


def _links():
    listed = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, timeout=30).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in listed.splitlines()]
