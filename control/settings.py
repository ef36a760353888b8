"""The control room's Django settings: a loopback tool with no database, no login and no sessions.

Safe by default (docs/control-room.md): Host must be a loopback name
(ALLOWED_HOSTS: anything else is a 400, which also defeats DNS rebinding),
a request with a foreign Origin is refused (control/guard.py), and every
POST needs Django's CSRF token. CONTROL_STATE_DIR and CONTROL_RUNS_DIR are
set by control/__main__.py.
"""

import os
import secrets
from pathlib import Path

# SECURITY
# A new key per process: nothing signed outlives it (the CSRF cookie is not signed).
SECRET_KEY = secrets.token_urlsafe(50)
DEBUG = False
# https://docs.djangoproject.com/en/stable/ref/settings/#allowed-hosts: the port is not part of the match.
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "[::1]"]
CSRF_COOKIE_SAMESITE = "Strict"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
CSRF_FAILURE_VIEW = "control.views.csrf_failure"

# APPLICATION
INSTALLED_APPS = ["django.contrib.staticfiles", "control"]
MIDDLEWARE = [
    "control.guard.LoopbackOnly",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "control.urls"
TEMPLATES = [{"BACKEND": "django.template.backends.django.DjangoTemplates", "APP_DIRS": True, "OPTIONS": {}}]
DATABASES = {}
USE_TZ = True

# STATIC FILES: served by WhiteNoise straight from control/static/, no collectstatic step.
STATIC_URL = "/static/"
WHITENOISE_USE_FINDERS = True

# THE ROOM
CONTROL_STATE_DIR = Path(os.environ.get("CONTROL_STATE_DIR", "state/cluster"))
CONTROL_RUNS_DIR = Path(os.environ.get("CONTROL_RUNS_DIR", "results/control"))

LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"console": {"class": "logging.StreamHandler"}},
           "loggers": {"django": {"handlers": ["console"], "level": "WARNING"}}}
