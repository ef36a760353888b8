"""ASGI entry point: `uvicorn labsite.asgi:application`: HTTP and the chat's WebSockets.

HTTP goes through Django's own ASGI handler, so every page and API answers
as under WSGI; WebSockets go through WEBSOCKET_MIDDLEWARE (the handshake's
Origin and login, accounts/sockets.py) to the routes named by
WEBSOCKET_ROUTES (chat/routing.py). The shell names both, importing no app.
"""

import os
from importlib import import_module

from django.core.asgi import get_asgi_application

from labcore.serving import start_serving

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings")

http = get_asgi_application()  # first: it sets Django up, so the routes can import models

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.utils.module_loading import import_string  # noqa: E402

application = ProtocolTypeRouter({
    "http": http,
    "websocket": import_string(settings.WEBSOCKET_MIDDLEWARE)(
        URLRouter(import_module(settings.WEBSOCKET_ROUTES).websocket_urlpatterns)),
})

# Background work the apps registered (the maintenance scheduler), once the apps are loaded.
start_serving(asgi=True)
