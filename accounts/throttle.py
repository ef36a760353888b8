"""Login and sign-up throttling: against password guessing, without handing out lockouts,
and against sign-ups that each cost a password hash.

Failures are counted per (username, client address) and per client address,
so a guesser slows down only itself: the owner of an account, logging in
from another address, is never locked out by someone else's wrong guesses.
The client address is the one labcore.proxy vouches for: only the load
balancer may name another than the connection's.

Each login attempt first reserves a slot in both counters with an atomic
add-or-increment, and only then hashes the password. So N parallel guesses
get at most LOGIN_MAX_FAILURES evaluated: a check, then a hash, then a
recorded failure would let every guess in flight pass the same check. A
success gives its slots back: the (username, address) counter is cleared and
the address counter decremented, so the address counter counts failures
(and attempts in flight), not logins. A refused attempt counts too, so an
address that keeps trying stays refused until its window ends. An attempt
that a failed store left unanswered (a 503) gives its slots back as well:
an outage is nobody's wrong guess, and must not lock users out once it
ends (`given_back_if_a_store_fails`).

The counters live in the "shared" cache: Redis or memcached when the
configuration has one, so the limits hold across instances; a per-process
LocMem otherwise, where each instance counts alone. A counter's window
starts at its first failure and is not renewed by later ones.

Why not a library: django-axes records a failure from the
`user_login_failed` signal, after the password was checked (the same
check-then-act race), and renews the window on every failure; django-ratelimit
increments atomically but counts every request, successes included, in fixed
windows, with no way to clear a counter on success.

Sign-ups are counted per client address with the same reservation: each
costs a password hash (about 0.6 s of CPU at Django's rounds) and makes a
user who may create rooms, so at most SIGNUP_MAX_PER_ADDRESS accounts per
SIGNUP_WINDOW come from one address. A form refused before anything was
hashed (a taken name, a weak password) gives its slot back.
"""

import hashlib
import ipaddress
import logging
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth.forms import UsernameField
from django.core.cache import caches

from labcore.errors import dependency_failure
from labcore.proxy import client_address
from labcore.stores import store_errors

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attempt:
    """A login attempt's reserved slots; `allowed` is False past a limit."""

    user_key: str
    address_key: str
    address: str
    allowed: bool


def _hashed(prefix, text):
    # Hashed: keys stay short and legal in every cache, whatever was typed
    # (memcached refuses spaces and keys over 250 bytes).
    return prefix + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def counted_address(request):
    """The client address a counter is kept for: an IPv6 client counts by its /64.

    One IPv6 host is usually given a whole /64, so counting by full address
    would give it 2**64 addresses to rotate through.
    """
    address = client_address(request)
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if parsed.version == 6 and parsed.ipv4_mapped:
        return str(parsed.ipv4_mapped)  # an IPv4 client seen by a dual-stack listener: its own address
    if parsed.version == 6 and not parsed.is_loopback:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return address


def canonical_username(username):
    """The username as the login form reads it: stripped, NFKC, any case."""
    return (UsernameField().to_python(username) or "").lower()


def _reserve(cache, key, window):
    """Add one to the counter at key, starting a window of that many seconds if there is none."""
    if cache.add(key, 1, window):
        return 1
    try:
        return cache.incr(key)
    except ValueError:
        # The window ran out between add() and incr(): start a new one.
        cache.add(key, 1, window)
        return 1


def _give_back(cache, key):
    try:
        cache.decr(key)
    except ValueError:
        pass  # the window ran out meanwhile


def reserve(request, username):
    """Reserve an attempt before the password is checked; see Attempt.allowed."""
    address = counted_address(request)
    user_key = _hashed("login-failures:user-address:", f"{canonical_username(username)}\n{address}")
    address_key = _hashed("login-failures:address:", address)
    cache = caches["shared"]
    with store_errors(settings.SHARED_STORE):
        for_user = _reserve(cache, user_key, settings.LOGIN_FAILURE_WINDOW)
        for_address = _reserve(cache, address_key, settings.LOGIN_FAILURE_WINDOW)
    allowed = (
        for_user <= settings.LOGIN_MAX_FAILURES and for_address <= settings.LOGIN_MAX_FAILURES_PER_ADDRESS
    )
    if for_user == settings.LOGIN_MAX_FAILURES + 1 or for_address == settings.LOGIN_MAX_FAILURES_PER_ADDRESS + 1:
        logger.warning("login throttled from %s (for the username: %s, for the address: %s failures)",
                       address, for_user - 1, for_address - 1)
    return Attempt(user_key, address_key, address, allowed)


def succeeded(attempt):
    """Give a successful attempt's slots back."""
    cache = caches["shared"]
    with store_errors(settings.SHARED_STORE):
        cache.delete(attempt.user_key)
        _give_back(cache, attempt.address_key)


@contextmanager
def given_back_if_a_store_fails(*keys):
    """Give the reserved slots at keys back if a store fails inside the block (the answer is a 503), then re-raise.

    For an attempt: its user_key and address_key; for a sign-up: its address_key. If the shared store
    itself has failed meanwhile, its slots stay taken (the window ends them) and the first failure is raised.
    """
    try:
        yield
    except Exception as failure:
        if dependency_failure(failure):
            try:
                with store_errors(settings.SHARED_STORE):
                    for key in keys:
                        _give_back(caches["shared"], key)
            except Exception as also:
                if not dependency_failure(also):
                    raise
        raise


@dataclass(frozen=True)
class SignUp:
    """A sign-up's reserved slot; `allowed` is False past SIGNUP_MAX_PER_ADDRESS."""

    address_key: str
    allowed: bool


def reserve_sign_up(request):
    """Reserve a sign-up for the request's client address before the form is checked or the password hashed."""
    address = counted_address(request)
    address_key = _hashed("sign-ups:address:", address)
    with store_errors(settings.SHARED_STORE):
        count = _reserve(caches["shared"], address_key, settings.SIGNUP_WINDOW)
    if count == settings.SIGNUP_MAX_PER_ADDRESS + 1:
        logger.warning("sign-ups throttled from %s (%s in the window)", address, count - 1)
    return SignUp(address_key, count <= settings.SIGNUP_MAX_PER_ADDRESS)


def sign_up_refused(sign_up):
    """The form was refused before a password was hashed: give the slot back."""
    with store_errors(settings.SHARED_STORE):
        _give_back(caches["shared"], sign_up.address_key)
