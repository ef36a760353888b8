"""Latency between nodes, in user space: the relay process (deploy/relay.py) and the functions deploy calls.

Interface, for the code that places relays (one process per node, any number
of named routes, each with its own settings):

    record = start({"redis2": (("127.0.0.1", 7001), ("127.0.0.1", 6380))},
                   control="/state/redis2.latency.sock", log_path="/state/redis2.latency.log",
                   delay_ms=2, wrap=lambda argv: argv)   # wrap: e.g. to run it in a namespace
    set_delay(record["control"], 30, jitter_ms=1)      # every route; route="redis2" for one
    stall(record["control"], 5)                       # or stall(control) until resume(control)
    resume(record["control"])
    # The connections app1 (pid 4242, at 127.0.0.1) opens: 5 ms more each way.
    set_peers(record["control"], {"app1": {"ms": 5, "address": "127.0.0.1", "pids": [4242]}})
    stall(record["control"], 3, peer="app1")          # only the connections with app1 at the other end
    status(record["control"])    # {"redis2": {"listen", "target", "delay_ms", "jitter_ms", "stalled",
                                 #             "stall_left_s", "connections", "queued_bytes"}}
    stop(record)                 # SIGTERM: closes every connection, removes the control socket

`start` runs `python -m deploy.latency --control PATH --route NAME LISTEN TARGET ... [--delay MS]
[--jitter MS]` (LISTEN and TARGET as HOST:PORT; port 0 picks a free one, which `status` tells) and
returns once it answers. The control socket takes one JSON object per line,
{"op": "status" | "delay" | "stall" | "resume" | "peers", "route": NAME (optional), "ms", "jitter_ms",
"seconds", "peer", "peers"},
and answers one line, {"ok": true, "routes": {...}} or {"ok": false, "error": "..."}. It is created
with the process's umask (077 under deploy): only its user can change the links.
"""

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from deploy import control as control_socket
from deploy import processes
from deploy.processes import DeployError
from deploy.relay import MAX_DELAY_MS, Relay, milliseconds, precise_loop  # noqa: F401 (MAX_DELAY_MS: for callers)

ROOT = Path(__file__).resolve().parent.parent

# The process: its routes, its control socket, and the functions deploy calls.

def _command(relays, request):
    """Carry out one control request; return every chosen route's status. ValueError for a bad request."""
    route = request.get("route")
    if route is not None and route not in relays:
        raise ValueError(f"no route {route!r}; routes: {', '.join(sorted(relays))}")
    chosen = [relays[route]] if route is not None else list(relays.values())
    op = request.get("op")
    if op == "delay":
        ms, jitter = milliseconds(request.get("ms"), "ms"), milliseconds(request.get("jitter_ms", 0), "jitter_ms")
        for relay in chosen:
            relay.set_delay(ms, jitter)
    elif op == "peers":
        peers = request.get("peers")
        if not isinstance(peers, dict) or not all(isinstance(value, dict) for value in peers.values()):
            raise ValueError('peers must be {"name": {"ms", "jitter_ms", "address", "pids"}, ...}')
        for relay in chosen:
            relay.set_peers(peers)
    elif op in ("stall", "resume") and request.get("peer") is not None:
        for relay in chosen:
            relay.stall_peer(request["peer"], request.get("seconds") if op == "stall" else 0)
    elif op == "stall":
        for relay in chosen:
            relay.stall(request.get("seconds"))
    elif op == "resume":
        for relay in chosen:
            relay.resume()
    elif op != "status":
        raise ValueError(f"op must be one of status, delay, stall, resume, peers; not {op!r}")
    return {"routes": {name: relay.status() for name, relay in relays.items()}}


async def _control(relays, reader, writer):
    try:
        while line := await reader.readline():
            writer.write(control_socket.answer(lambda request: _command(relays, request), line))
            await writer.drain()
    except (OSError, ValueError):
        pass  # the client went away, or sent a line longer than the reader's limit
    finally:
        writer.close()


async def serve(routes, *, control, delay_ms=0, jitter_ms=0):
    """Relay every route until SIGTERM or SIGINT, controlled through the UNIX socket `control`."""
    relays = {name: Relay(listen=listen, target=target, delay_ms=delay_ms, jitter_ms=jitter_ms)
              for name, (listen, target) in routes.items()}
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    server = None
    try:
        for relay in relays.values():
            await relay.start()
        server = await asyncio.start_unix_server(lambda r, w: _control(relays, r, w), path=control)
        await stopping.wait()
    finally:
        if server:
            server.close()
        await asyncio.gather(*(relay.close() for relay in relays.values()))
        Path(control).unlink(missing_ok=True)


def _address(text):
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"an address is HOST:PORT, not {text!r}")
    return host, int(port)


def argv(routes, *, control, delay_ms=0, jitter_ms=0):
    """The command that runs a relay process for `routes`: {name: ((host, port), (host, port))}, listen then target."""
    command = [sys.executable, "-m", "deploy.latency", "--control", str(control),
               "--delay", str(delay_ms), "--jitter", str(jitter_ms)]
    for name, (listen, target) in routes.items():
        command += ["--route", name, "{}:{}".format(*listen), "{}:{}".format(*target)]
    return command


def start(routes, *, control, log_path, delay_ms=0, jitter_ms=0, wrap=list, timeout=20):
    """Start a relay process (see argv) as wrap(argv) runs it; return {"pid", "started", "control"} once it answers."""
    try:
        milliseconds(delay_ms, "delay_ms"), milliseconds(jitter_ms, "jitter_ms")
    except ValueError as error:
        raise DeployError(str(error)) from None
    command = argv(routes, control=control, delay_ms=delay_ms, jitter_ms=jitter_ms)
    record = processes.spawn(wrap(command), log_path=log_path, cwd=ROOT)
    record["control"] = str(control)

    control_socket.wait_started(record, log_path=log_path, what="the latency relay", ready=lambda: status(control),
                                waiting_for=f"the latency relay's control socket {control}", timeout=timeout,
                                undo=stop)
    return record


def request(control, message, timeout=5):
    """Send one request to the relay's control socket; return its answer, or DeployError with its error."""
    return control_socket.request(control, message, what="the latency relay", timeout=timeout)


def status(control):
    """Every route's settings and load, by name."""
    return request(control, {"op": "status"})["routes"]


def set_delay(control, ms, *, jitter_ms=0, route=None):
    return request(control, {"op": "delay", "ms": ms, "jitter_ms": jitter_ms, "route": route})["routes"]


def stall(control, seconds=None, *, route=None, peer=None):
    """Stall every chosen route (route=None: all), or only its connections with node `peer` at the other end."""
    return request(control, {"op": "stall", "seconds": seconds, "route": route, "peer": peer})["routes"]


def resume(control, *, route=None, peer=None):
    return request(control, {"op": "resume", "route": route, "peer": peer})["routes"]


def set_peers(control, peers, *, route=None):
    """The nodes a connection may come from, {name: {"ms", "jitter_ms", "address", "pids"}}, each adding its
    delay and jitter to the route's own (deploy/relay.py)."""
    return request(control, {"op": "peers", "peers": peers, "route": route})["routes"]


def stop(record):
    """Stop the relay (SIGTERM, SIGKILL after 10 s) and remove its control socket if it left it."""
    processes.stop(record)
    Path(record["control"]).unlink(missing_ok=True)


def main(args=None):
    parser = argparse.ArgumentParser(prog="python -m deploy.latency", description=__doc__.split("\n")[0])
    parser.add_argument("--control", required=True, help="the UNIX socket that takes requests")
    parser.add_argument("--route", nargs=3, action="append", required=True, metavar=("NAME", "LISTEN", "TARGET"),
                        help="relay connections to LISTEN (HOST:PORT) to TARGET (HOST:PORT); repeatable")
    parser.add_argument("--delay", type=float, default=0, help="milliseconds added each way (default 0)")
    parser.add_argument("--jitter", type=float, default=0, help="milliseconds of jitter each way (default 0)")
    options = parser.parse_args(args)
    try:
        routes = {name: (_address(listen), _address(target)) for name, listen, target in options.route}
        milliseconds(options.delay, "--delay"), milliseconds(options.jitter, "--jitter")
    except (argparse.ArgumentTypeError, ValueError) as error:
        parser.error(str(error))
    if len(routes) < len(options.route):
        parser.error("each --route needs a name of its own")
    asyncio.run(serve(routes, control=options.control, delay_ms=options.delay, jitter_ms=options.jitter),
                loop_factory=precise_loop)


if __name__ == "__main__":
    main()
