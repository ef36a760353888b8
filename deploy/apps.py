"""The site's instances (app1..) and HAProxy in front of them: their environment, start, and moves in and out.

Each instance is a gunicorn (or granian) process served as deploy/web.py
says, listening on its own port (deploy/layout.py), in its namespace with
--netns, in its cgroup with --cpu-quota; HAProxy sends it requests once
/healthz answers, and its admin socket takes it out and brings it back.
"""

import os
import subprocess
import sys
import urllib.request

from deploy import cgroups, haproxy, links, sockets, stores, web
from deploy.errors import DeployError
from deploy.layout import STATS_OFFSET
from deploy.processes import PRIVATE_UMASK, port_open, require, running, spawn, wait_for, write_private
from deploy.record import ROOT
from deploy.sizing import MAX_INSTANCES

SHELL_IGNORED = ("TRUSTED_PROXIES", "REDIS_PASSWORD", "MIDDLEWARE_OFF")


def site_env(cluster, name=None):
    """The environment of the cluster's instances (and of its migrate), for instance `name`."""
    env = {
        # Not from the shell: only HAProxy speaks for clients (by PROXY_SECRET),
        # Redis's password is the cluster's own, and layers are left out for one
        # cluster (--env, a bench row), never for every cluster a command starts.
        **{variable: value for variable, value in os.environ.items() if variable not in SHELL_IGNORED},
        **cluster.env,
        "DJANGO_SETTINGS_MODULE": "labsite.settings",
        "SECRET_KEY": cluster.secret_key,
        "PROXY_SECRET": cluster.proxy_secret,
        "SESSION_STORE": cluster.sessions,
        "PRESENCE_STORE": cluster.presence,
        "STATE_DIR": str(cluster.path),
        "DURABLE": "1" if cluster.durable else "0",
        "DEBUG": "0",
        **({"CHANNEL_LAYER": cluster.channel_layer} if cluster.channel_layer else {}),
    }
    env.pop("SESSION_ENGINE", None)
    # Only the servers this cluster runs: nothing leaks in from the caller's shell.
    for variable in stores.site_variables():
        env.pop(variable, None)
    env.update(stores.store_env(cluster))
    if name:
        env["INSTANCE_NAME"] = name
        if cluster.network and "ALLOWED_HOSTS" not in cluster.env:
            # A client pinned to an instance names it by its namespace's address.
            env["ALLOWED_HOSTS"] = f"127.0.0.1,localhost,{cluster.host(name)}"
    return env


def migrate(cluster):
    manage(cluster, "migrate", "--no-input", "-v0")


def manage(cluster, *argv, stdin=None):
    """Run a `manage.py` command with the cluster's settings; return what it printed."""
    done = subprocess.run(
        [sys.executable, "manage.py", *argv],
        cwd=ROOT, env=site_env(cluster), input=stdin, capture_output=True, text=True, timeout=300,
        umask=PRIVATE_UMASK,
    )
    if done.returncode:
        raise DeployError(f"{argv[0]} failed: {done.stderr.strip()[-500:]}")
    return done.stdout


def start_instance(cluster, name):
    port, host = cluster.instance_port(name), cluster.host(name)
    own = links.place_instance(cluster, name)  # behind its relay, unless up --no-relays (deploy/links.py)
    argv = cluster.command(name, web.argv(cluster.server, port=own, host=host))
    record = spawn(argv, log_path=cluster.path / "logs" / f"{name}.log", env=site_env(cluster, name), cwd=ROOT)
    cluster.instances[name] = {"port": port, **record}
    cluster.save()
    wait_for(lambda: _healthy(cluster.instance_url(name)) or not running(record), timeout=30,
             what=f"{name} on {host}:{port}")
    if not running(record):
        raise DeployError(f"{name} exited at start; see: python -m deploy logs {name}")
    confine(cluster, record["pid"], name)
    links.refresh(cluster)


def confine(cluster, pid, group):
    """Move a process group into its cgroup, when the cluster has CPU limits."""
    if cluster.cpu:
        cgroups.Groups(cluster.cpu).join(pid, group)


def answers(url, timeout=1):
    """True if url answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def _healthy(instance_url):
    return answers(f"{instance_url}/healthz")


def start_haproxy(cluster):
    binary = require("haproxy", "haproxy")
    up_now = set(cluster.instances)
    slots = [(f"app{n}", cluster.host(f"app{n}"), cluster.instance_port(f"app{n}"), f"app{n}" in up_now)
             for n in range(1, MAX_INSTANCES + 1)]
    config = cluster.path / "haproxy.cfg"
    write_private(
        config,
        haproxy.render(
            port=cluster.port,
            stats_port=cluster.port + STATS_OFFSET,
            socket_path=cluster.path / "haproxy.sock",
            pidfile=cluster.path / "haproxy.pid",
            lb=cluster.lb,
            slots=slots,
            source=cluster.proxy_source,
        )
    )
    env = haproxy.environment(cluster.proxy_secret)
    check = subprocess.run([binary, "-c", "-f", config], capture_output=True, text=True, env=env)
    if check.returncode:
        alerts = [line for line in check.stderr.splitlines() if "ALERT" in line]
        raise DeployError(f"haproxy rejected {config}: {alerts[0] if alerts else check.stderr.strip()}")
    cluster.haproxy = spawn([binary, "-f", config], log_path=cluster.path / "logs" / "haproxy.log", env=env)
    cluster.save()
    confine(cluster, cluster.haproxy["pid"], cgroups.REST)
    wait_for(lambda: port_open(cluster.port) or not running(cluster.haproxy), timeout=10,
             what="haproxy")
    if not running(cluster.haproxy):
        raise DeployError("haproxy exited at start; see: python -m deploy logs haproxy")


def wait_serving(cluster):
    def all_up():
        try:
            rows = cluster.runtime.stats()
        except OSError:  # HAProxy opens its admin socket a moment after its port
            return False
        return all(rows[name]["status"] == "UP" for name in cluster.instances)

    wait_for(all_up, timeout=30, what="every instance to be UP in HAProxy")
    wait_for(lambda: answers(f"{cluster.url}/readyz", timeout=2), timeout=30, what=f"{cluster.url}/readyz")


def take_out(cluster, name):
    """Stop sending requests and sockets to an instance, wait for its last requests, then close its sockets.

    Not HAProxy's `drain`: a drained server still gets every client whose
    sticky cookie names it. `maint` sends those elsewhere too. Its open
    WebSockets are closed with 1001 (deploy/sockets.py) once nothing new
    reaches it, so that their clients reconnect to another instance.
    """
    cluster.runtime.set_state(name, "maint")
    wait_for(lambda: cluster.runtime.stats()[name]["scur"] == "0", timeout=15,
             what=f"{name}'s requests in flight to finish")
    sockets.drain(cluster, name)


def bring_in(cluster, name):
    cluster.runtime.set_state(name, "ready")
    wait_for(lambda: cluster.runtime.stats()[name]["status"] == "UP", timeout=15,
             what=f"{name} to be UP in HAProxy")


def state(cluster, name, record, lb_status):
    """The cluster's state of the instance (Cluster.state), or draining while HAProxy holds it out (MAINT or
    DRAIN, as `kill --signal TERM` and `scale` do before the stop)."""
    found = cluster.state(name, record)
    return "draining" if found == "up" and lb_status.split(" ")[0] in ("MAINT", "DRAIN") else found
