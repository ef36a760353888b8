"""What starts with a serving process, and not with every manage.py command.

Apps register their background work (the maintenance scheduler) from their
AppConfig.ready(); the WSGI entry point starts it once the app registry is
loaded. A migrate or a test run loads the same apps and starts nothing.
"""

_on_serve = []


def on_serve(start):
    """Call start() when this process begins to serve requests."""
    _on_serve.append(start)


def start_serving():
    for start in _on_serve:
        start()
