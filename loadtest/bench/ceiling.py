"""The ceiling: a bare Django project that answers like an empty poll, for `python -m loadtest bench`.

No middleware, no apps, no database, one view returning a constant JSON
body the size of an empty poll's. Served under exactly an instance's
server command (deploy/web.py), it is what Django itself can serve on this
machine; every store's poll mix is reported as a ratio to it.

This module is its settings, its URLs and, when a server asks for
`application`, its WSGI entry point.
"""

import os

from django.http import JsonResponse
from django.urls import path

SECRET_KEY = "the-ceiling-keeps-no-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = __name__
INSTALLED_APPS = []
MIDDLEWARE = []
DATABASES = {}
USE_TZ = True
TIME_ZONE = "UTC"

BODY = {"room": "bench", "messages": [], "cursor": 0}


def poll(request, **kwargs):
    return JsonResponse(BODY)


urlpatterns = [path("<path:anything>", poll), path("", poll)]


def __getattr__(name):
    # Built on first use, once this module (the settings) is fully imported.
    if name != "application":
        raise AttributeError(name)
    os.environ["DJANGO_SETTINGS_MODULE"] = __name__
    from django.core.wsgi import get_wsgi_application

    global application
    application = get_wsgi_application()
    return application
