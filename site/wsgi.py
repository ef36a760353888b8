"""WSGI entry point: `gunicorn labsite.wsgi`."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "labsite.settings")

application = get_wsgi_application()

# Every serving process runs the maintenance scheduler; only the lease holder acts.
from maintenance import scheduler  # noqa: E402  (needs the app registry loaded above)

scheduler.start()
