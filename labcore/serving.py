"""What starts with a serving process, and not with every manage.py command.

Apps register their background work (the maintenance scheduler) from their
AppConfig.ready(); the WSGI and ASGI entry points start it once the app registry is
loaded. A migrate or a test run loads the same apps and starts nothing.
"""

_on_serve = []


def on_serve(start, *, asgi_only=False):
    """Call start() when this process begins to serve requests (asgi_only: only under an ASGI server)."""
    _on_serve.append((start, asgi_only))


def start_serving(*, asgi=False):
    """Start what the apps registered; asgi: the process serves the ASGI application (labsite/asgi.py)."""
    for start, asgi_only in _on_serve:
        if asgi or not asgi_only:
            start()
