"""Where a request came from: the load balancer's word for it, or the connection's.

Only the load balancer may speak for a client. It proves it is the load
balancer with a header holding PROXY_SECRET, a secret of the cluster that
it sets on every request after deleting any copy a client sent
(deploy/haproxy.cfg.template); the right-most X-Forwarded-For entry, the
one it appended, is then the client's address. A source address proves
nothing on one machine: any local process can connect from HAProxy's
127.0.0.9 and send any header. A header works the same for every server
(gunicorn, gevent, Granian), inside network namespaces and in containers;
the PROXY protocol would not (Granian, as of 2.8, does not speak it).

TRUSTED_PROXIES, addresses or networks whose X-Forwarded-For is believed
without a secret, is for a proxy that cannot set one without handing it to
every other site behind it, like a shared ingress controller. It is safe
only where nothing but that proxy can connect from those addresses.
"""

import hmac
import ipaddress
from functools import cache

from django.conf import settings

# The header `X-Lab-Proxy-Secret`, as WSGI names it.
SECRET_HEADER = "HTTP_X_LAB_PROXY_SECRET"


class ProxyMiddleware:
    """Set `request.client_address`, and drop the secret header before anything else reads it.

    Dropped so that no view, log or error page can show it.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        presented = request.META.pop(SECRET_HEADER, None)
        request.client_address = _address(request.META, presented)
        return self.get_response(request)


def client_address(request):
    """The request's client address, as ProxyMiddleware found it (REMOTE_ADDR without it)."""
    return getattr(request, "client_address", None) or request.META.get("REMOTE_ADDR", "")


def trusted_networks(entries):
    """TRUSTED_PROXIES's entries as networks; ValueError names a bad one."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"TRUSTED_PROXIES: {entry!r} is not an address or a network") from None
    return networks


@cache
def _networks(entries):
    return trusted_networks(entries)


def _vouched(remote, presented):
    if settings.PROXY_SECRET and presented is not None:
        # Constant time: a timing must not tell how much of a guess was right.
        return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), settings.PROXY_SECRET.encode())
    if not settings.TRUSTED_PROXIES:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    return any(address in network for network in _networks(tuple(settings.TRUSTED_PROXIES)))


def _address(meta, presented):
    remote = meta.get("REMOTE_ADDR", "")
    if not _vouched(remote, presented):
        return remote
    # Entries left of the right-most were sent by the client and prove nothing.
    forwarded = meta.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
    try:
        return str(ipaddress.ip_address(forwarded))
    except ValueError:
        return remote
