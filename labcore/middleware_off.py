"""MIDDLEWARE_OFF: the site's MIDDLEWARE with layers left out, to measure what each layer costs.

Never for production: every layer left out switches a protection or a
service of the site off (docs/benchmarks/bench.md, "What each middleware
layer costs", says which). It exists for `python -m loadtest bench`, which
measures a store with and without some of its layers side by side (a row
`memory:MIDDLEWARE_OFF=all`), so that the gap between the poll mix and a
bare Django view (loadtest/bench/ceiling.py) splits into what each layer
does. The layers the poll mix cannot be answered without stay, whatever is
asked; asking for one of them, or for a layer MIDDLEWARE does not hold,
stops the site at start.
"""

from django.core.exceptions import ImproperlyConfigured

ALL = "all"
SEPARATOR = "+"  # not a comma or a colon: those separate `bench --stores` rows and their settings

# The layers that stay, and why.
KEPT = {
    "labcore.sessions.middleware.SessionMiddleware": "every request of the poll mix finds its login in the session",
    "django.middleware.csrf.CsrfViewMiddleware": (
        "it hands out the CSRF cookie that the API's own check (labcore/api.py) compares every session POST "
        "with; without it a user who signed up has none, and every heartbeat is refused"),
    "accounts.middleware.CachedAuthenticationMiddleware": "every API view asks who the request's user is",
}


def middleware_without(middleware, off):
    """`middleware` (dotted paths) without the layers `off` names, the rest in their order.

    `off` is MIDDLEWARE_OFF's value: layers separated by `+`, each named by
    its class name (`CommonMiddleware`) or its dotted path, or `all` for
    every layer but those KEPT; empty leaves `middleware` as it is.
    ImproperlyConfigured names a name that is no layer of `middleware`, or
    a layer KEPT, and the names that may be given.
    """
    optional = [path for path in middleware if path not in KEPT]
    dropped = set()
    for name in filter(None, (name.strip() for name in off.split(SEPARATOR))):
        if name == ALL:
            dropped.update(optional)
            continue
        named = [path for path in middleware if name in (path, _class_name(path))]
        if not named:
            raise ImproperlyConfigured(f"MIDDLEWARE_OFF: {name!r} is no layer of MIDDLEWARE. {_choices(optional)}")
        for path in named:
            if path in KEPT:
                raise ImproperlyConfigured(f"MIDDLEWARE_OFF: {name!r} may not be left out: {KEPT[path]}. "
                                           f"{_choices(optional)}")
        dropped.update(named)
    return [path for path in middleware if path not in dropped]


def _class_name(path):
    return path.rpartition(".")[2]


def _choices(optional):
    return (f"Give {ALL!r}, or layers separated by {SEPARATOR!r}, each by its class name or dotted path: "
            f"{', '.join(_class_name(path) for path in optional)}")
