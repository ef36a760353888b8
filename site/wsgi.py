"""WSGI entry point: `gunicorn labsite.wsgi`."""

import os

from django.core.wsgi import get_wsgi_application

from labcore.serving import start_serving

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings")

application = get_wsgi_application()

# Background work the apps registered (the maintenance scheduler), once the apps are loaded.
start_serving()
