"""How the site reaches etcd: its members' addresses, its client certificate, one client per process.

A lab cluster's members answer nobody without a certificate of the
cluster's own authority (deploy/etcd.py): not a key read or write, and
not a lease, a member list or an alarm either, none of which etcd's
users and passwords guard. So the site reaches them over HTTPS, checking
the member's certificate against ETCD_CA and presenting ETCD_CERT and
ETCD_KEY; without ETCD_CA it speaks plain HTTP, to an etcd of one's own
that asks for nothing (the development default).
"""

import threading
from dataclasses import dataclass
from functools import cache
from urllib.parse import urlsplit

import etcd3gw
import etcd3gw.exceptions
import requests

DEFAULT_PORT = 2379


@dataclass(frozen=True)
class EtcdTarget:
    """Where an etcd cluster's members answer ((host, port) pairs), how long a call may wait, and its TLS files.

    `ca`, `cert` and `key` are paths: the authority that signed the members'
    certificates, and the client's certificate and key. All three, or none.
    """

    endpoints: tuple
    timeout: float
    ca: str = ""
    cert: str = ""
    key: str = ""


def parse_etcd_endpoints(text):
    """ETCD_ENDPOINTS ("host[:port],...") -> ((host, port), ...); ValueError naming the setting for a bad item."""
    endpoints = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        parts = urlsplit(f"//{item}")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0 or parts.username or parts.password or parts.path or parts.query or parts.fragment:
            raise ValueError(f"ETCD_ENDPOINTS takes host:port items, comma-separated, with a port from 1 to "
                             f"65535; {item!r} is not one")
        endpoints.append((parts.hostname or "127.0.0.1", port or DEFAULT_PORT))
    return tuple(endpoints)


def parse_etcd_tls(ca, cert, key):
    """(ETCD_CA, ETCD_CERT, ETCD_KEY) as they are; ValueError naming them unless all three or none are given."""
    if any((ca, cert, key)) and not all((ca, cert, key)):
        raise ValueError("ETCD_CA, ETCD_CERT and ETCD_KEY go together: give all three (the members take only "
                         "a client certificate of their own authority), or none for an etcd that asks for nothing")
    return ca, cert, key


def etcd_member(host, port, timeout, *, ca="", cert="", key=""):
    """An etcd3gw client of one member: over HTTPS with a client certificate if `ca` is given."""
    if not ca:
        return etcd3gw.client(host=host, port=port, timeout=timeout)
    session = requests.Session()
    # Not from the environment: requests lets REQUESTS_CA_BUNDLE replace the
    # session's own authority (so a member's certificate would not verify),
    # and HTTPS_PROXY send the certificate elsewhere.
    session.trust_env = False
    session.verify, session.cert = ca, (cert, key)
    return etcd3gw.client(host=host, port=port, timeout=timeout, protocol="https", session=session)


class EtcdClient:
    """etcd's JSON gateway, through etcd3gw, over several members.

    etcd3gw talks to one member; a cluster has several, any of which can
    serve a request (a follower forwards it to the leader). A member that
    refuses the connection is skipped at once for the next; one that does
    not answer in time fails the call, and the next call starts with
    another member, so a call waits at most the timeout.
    """

    def __init__(self, target):
        self._members = [etcd_member(host, port, target.timeout, ca=target.ca, cert=target.cert, key=target.key)
                         for host, port in target.endpoints]
        self._first = 0  # the member that answered last
        self._lock = threading.Lock()

    def call(self, operation):
        """Return operation(member's client) from the first member that takes the connection."""
        with self._lock:
            first = self._first
        count = len(self._members)
        for offset in range(count):
            index = (first + offset) % count
            try:
                result = operation(self._members[index])
            except etcd3gw.exceptions.ConnectionFailedError:
                continue
            except etcd3gw.exceptions.ConnectionTimeoutError:
                with self._lock:
                    self._first = (index + 1) % count
                raise
            with self._lock:
                self._first = index
            return result
        raise etcd3gw.exceptions.ConnectionFailedError(f"none of the {count} etcd members took the connection")


# One client per process and target: every gunicorn instance has its own connections.
@cache
def etcd_client(target):
    """Return this process's client for the etcd cluster at target."""
    return EtcdClient(target)
