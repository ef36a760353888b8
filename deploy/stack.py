"""The cluster as a Docker Swarm stack: what the swarm runtime supports, and the stack file (Compose format).

Under `--runtime swarm` the same cluster runs as services of one stack: the
instances as one service `app` whose tasks are app1, app2, ... by slot,
HAProxy in front of them, Redis and PostgreSQL, and a one-off `migrate`.
Every service uses `endpoint_mode: dnsrr`: the kernel here has no IPVS,
which Swarm's virtual IPs and routing mesh need, so a service name resolves
to its tasks' own addresses and HAProxy resolves `tasks.app` itself (its
`resolvers` section, Docker's DNS at 127.0.0.11), taking replaced tasks in
and dropped ones out. HAProxy publishes its ports in host mode, on loopback
only (docker_gwbridge's host binding address, deploy/engine.py).

Every address Docker hands out is inside POOL (10.251.0.0/16), clear of the
namespace experiments' 10.250.0.0/16 (deploy/netns.py).

Options that need host processes or namespaces (partitions, CPU quotas,
Sentinel, Redis Cluster, standbys, a store other than Redis or PostgreSQL)
are refused by `check` before anything starts, each with its reason.
"""

import hashlib
import ipaddress
from pathlib import Path
from string import Template

import yaml

from deploy.errors import DeployError
from deploy.layout import STATS_OFFSET
from deploy.processes import write_private
from deploy.sizing import MAX_INSTANCES, POSTGRES_MAX_CONNECTIONS
from labcore import registry

POOL = ipaddress.ip_network("10.251.0.0/16")
DAEMON_POOL = ipaddress.ip_network("10.251.0.0/18")  # dockerd's default-address-pools (bridges), /24 each
GWBRIDGE_SUBNET = ipaddress.ip_network("10.251.64.0/24")  # docker_gwbridge, made by the lab before `swarm init`
SWARM_POOL = ipaddress.ip_network("10.251.128.0/17")  # `swarm init --default-addr-pool`: ingress and overlays
STACK_SUBNET = ipaddress.ip_network("10.251.250.0/24")  # the stack's own overlay network
SERVERS = {"redis", "postgres"}  # the kinds of server the swarm runtime runs
APP_PORT, STATS_PORT, REDIS_PORT, PG_PORT = 8000, 8404, 6379, 5432
BASE_IMAGE = "stateful-lab-base:trixie"
SITE_IMAGE = "stateful-lab-site:latest"
LOADGEN_IMAGE = "stateful-lab-loadgen:latest"
TEMPLATE = Path(__file__).with_name("haproxy-swarm.cfg.template")
# Settings a process cluster reads from the host that mean nothing in a container.
REFUSED = {
    "namespaces": "--netns: partitions need the lab's network namespaces, and Swarm's tasks live in Docker's",
    "cpu_quota": "--cpu-quota: the lab's cgroups hold host processes; Swarm would need resources.limits",
    "site_cpus": "--site-cpus: the lab's cgroups hold host processes, not Swarm's tasks",
    "latency": "--latency: the latency relays are host processes in front of host processes",
    "channel_layer": "--channel-layer: the site image serves WSGI (gunicorn), without WebSockets",
}


def check(*, instances, sessions, presence, db, server, topology, namespaces=False, cpu_quota=None,
          site_cpus=None, latency=None, channel_layer=""):
    """DeployError naming every option the swarm runtime cannot honour; else the kinds of server it runs."""
    given = {"namespaces": namespaces, "cpu_quota": cpu_quota, "site_cpus": site_cpus, "latency": latency,
             "channel_layer": channel_layer}
    problems = [reason for name, reason in REFUSED.items() if given[name]]
    if topology.redis != "single":
        problems.append(f"--redis {topology.redis}: Swarm runs one Redis (Sentinel and Redis Cluster fail over "
                        "between host processes the lab signals)")
    if topology.redis_sync:
        problems.append("--redis-sync: one Redis has no replica to wait for")
    if topology.pg_standbys or topology.pg_sync != "off":
        problems.append("--pg-standbys/--pg-sync: Swarm runs one PostgreSQL, without standbys")
    if topology.pg_ha != "none":
        problems.append(f"--pg-ha {topology.pg_ha}: Patroni runs on the lab's host processes")
    if topology.redis_persistence != "none" or topology.pg_synchronous_commit != "on" or topology.power_loss:
        problems.append("--redis-persistence/--pg-synchronous-commit/--power-loss: the stack's stores run with "
                        "their images' defaults, on Docker's disks")
    if db != "postgres":
        problems.append(f"--db {db}: the instances are containers that share no file, so the database is "
                        "PostgreSQL (--db postgres)")
    if not server.startswith("gthread:") and server != "sync":
        problems.append(f"--server {server}: the site image serves with gunicorn (gthread:N or sync)")
    if not 1 <= instances <= MAX_INSTANCES:
        problems.append(f"--instances must be between 1 and {MAX_INSTANCES}, not {instances}")
    try:
        needed = registry.servers_needed(sessions=sessions, presence=presence, database_name=db)
    except registry.ConfigError as exc:
        raise DeployError(str(exc)) from None
    others = [kind for kind in needed if kind not in SERVERS]
    if others:
        problems.append(f"--sessions {sessions} / --presence {presence} need {', '.join(others)}, which the "
                        f"swarm runtime does not run (it runs {', '.join(sorted(SERVERS))})")
    if problems:
        raise DeployError("not under --runtime swarm: " + "; ".join(problems))
    return needed


def site_environment(cluster):
    """The instances' settings: the cluster's, with the stores named by their service names."""
    store = cluster.stores
    env = {
        **cluster.env,
        "SECRET_KEY": cluster.secret_key,
        "PROXY_SECRET": cluster.proxy_secret,
        "SESSION_STORE": cluster.sessions,
        "PRESENCE_STORE": cluster.presence,
        "DURABLE": "1" if cluster.durable else "0",
        "DEBUG": "0",
        "DATABASE_URL": f"postgres://lab:{store['postgres']['password']}@postgres:{PG_PORT}/postgres",
    }
    if "redis" in store:
        env |= {"REDIS_URL": f"redis://redis:{REDIS_PORT}/0", "REDIS_PASSWORD": store["redis"]["password"]}
    return env


def _literal(value):
    """A value `docker stack deploy` passes on as written: it would substitute $NAME from the caller's shell."""
    return value.replace("$", "$$")


def _service(image, command=None, *, replicas=1, restart="any", environment=None, **more):
    service = {"image": image, "networks": ["lab"],
               "deploy": {"replicas": replicas, "endpoint_mode": "dnsrr",
                          "restart_policy": {"condition": restart, "delay": "1s"}}}
    if command:
        service["command"] = [_literal(part) for part in command]
    if environment:
        service["environment"] = {name: _literal(str(value)) for name, value in environment.items()}
    return service | more


def compose(cluster, *, instances):
    """The stack file, as a dict, for a cluster record (deploy/record.py) and its number of instances."""
    env = site_environment(cluster)
    services = {
        "app": _service(SITE_IMAGE, replicas=instances, hostname="app{{.Task.Slot}}",
                        environment=env | {"INSTANCE_NAME": "app{{.Task.Slot}}"}),
        # Once, before the instances serve: `up` waits for it to complete.
        "migrate": _service(SITE_IMAGE, ["python", "-m", "django", "migrate", "--no-input", "-v0"],
                            restart="on-failure", environment=env),
        "haproxy": _service(BASE_IMAGE, ["haproxy", "-W", "-db", "-f", "/etc/lab/haproxy.cfg"], user="haproxy",
                            environment={"LAB_PROXY_SECRET": cluster.proxy_secret},
                            configs=[{"source": "haproxy", "target": "/etc/lab/haproxy.cfg"}],
                            ports=[{"target": APP_PORT, "published": cluster.port, "mode": "host"},
                                   {"target": STATS_PORT, "published": cluster.port + STATS_OFFSET,
                                    "mode": "host"}]),
        "postgres": _service(BASE_IMAGE, ["sh", "-c", POSTGRES_START], user="postgres",
                             environment={"LAB_PASSWORD": cluster.stores["postgres"]["password"],
                                          "LAB_FSYNC": "on" if cluster.durable else "off"}),
    }
    if "redis" in cluster.stores:
        services["redis"] = _service(BASE_IMAGE, [
            "sh", "-c", 'exec redis-server --port 6379 --requirepass "$LAB_PASSWORD" --protected-mode no '
                        '--save "" --appendonly no'], user="redis",
            environment={"LAB_PASSWORD": cluster.stores["redis"]["password"]})
    return {
        "version": "3.8",
        "services": services,
        "networks": {"lab": {"driver": "overlay", "ipam": {"config": [{"subnet": str(STACK_SUBNET)}]}}},
        # A config is immutable: named after its content, so a changed one is a new config.
        "configs": {"haproxy": {"file": "haproxy.cfg", "name": f"{cluster.stack}-haproxy-{_digest(cluster)}"}},
    }


# PostgreSQL in a task: a fresh cluster each start (as `deploy up` starts with an empty database), the
# password from the environment, any address of the stack's network let in with it.
POSTGRES_START = (
    'set -e; PATH=$(echo /usr/lib/postgresql/*/bin):$PATH; D=/tmp/pgdata; rm -rf "$D"; '
    'printf %s "$LAB_PASSWORD" > /tmp/pw; '
    'initdb -D "$D" -U lab --pwfile=/tmp/pw --auth-local=trust --auth-host=scram-sha-256 >/dev/null; rm /tmp/pw; '
    f'echo "host all all {STACK_SUBNET} scram-sha-256" >> "$D/pg_hba.conf"; '
    'exec postgres -D "$D" -c listen_addresses="*" -c unix_socket_directories=/tmp -c fsync="$LAB_FSYNC" '
    f'-c max_connections={POSTGRES_MAX_CONNECTIONS}'
)


def haproxy_config(cluster):
    """HAProxy's configuration inside its task: the instances as `tasks.app`, resolved by Docker's DNS."""
    sticky = cluster.lb == "sticky"
    return Template(TEMPLATE.read_text()).substitute(
        app_port=APP_PORT, stats_port=STATS_PORT, slots=MAX_INSTANCES,
        # A dynamic cookie: HAProxy names a task by a hash of its address, so a replaced task gets a new one.
        cookie=("    cookie SERVERID insert indirect nocache dynamic\n"
                f"    dynamic-cookie-key {cluster.proxy_secret}\n") if sticky else "",
    )


def _digest(cluster):
    return hashlib.sha256(haproxy_config(cluster).encode()).hexdigest()[:12]


def write(cluster, *, instances):
    """Write the stack file and HAProxy's configuration into the state folder (0600: they hold secrets)."""
    write_private(cluster.path / "haproxy.cfg", haproxy_config(cluster))
    path = cluster.path / "stack.yaml"
    write_private(path, yaml.safe_dump(compose(cluster, instances=instances), sort_keys=False))
    return path


def check_shape(document):
    """Problems with a stack file's shape, as sentences (none: it is what the swarm runtime relies on)."""
    problems = []
    services = document.get("services", {})
    for name in ("app", "haproxy", "postgres", "migrate"):
        if name not in services:
            problems.append(f"no service {name}")
    for name, service in services.items():
        if service.get("deploy", {}).get("endpoint_mode") != "dnsrr":
            problems.append(f"{name}: endpoint_mode is not dnsrr (no IPVS here for virtual IPs)")
        for port in service.get("ports", []):
            if port.get("mode") != "host":
                problems.append(f"{name}: port {port.get('published')} is not in host mode (the routing mesh "
                                "needs IPVS)")
    if "$" in yaml.safe_dump(document).replace("$$", ""):
        problems.append("a lone $: docker stack deploy would put the caller's environment there (write $$)")
    for name, network in document.get("networks", {}).items():
        for block in network.get("ipam", {}).get("config", []):
            if not ipaddress.ip_network(block["subnet"]).subnet_of(POOL):
                problems.append(f"network {name}: {block['subnet']} is outside {POOL}")
    return problems
