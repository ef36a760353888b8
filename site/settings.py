"""Settings for the lab's site, read from environment variables.

The defaults suit one developer machine. Every instance of a cluster must
share SECRET_KEY, DATABASE_URL and the store URLs; INSTANCE_NAME tells them
apart. See docs/operations/configuration.md for the full list.
"""

import os
import socket
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from labcore.config import channel_layer_settings, store_settings
from labcore.connections import parse_addresses, parse_primary_cache, with_password
from labcore.etcd import parse_etcd_endpoints, parse_etcd_tls
from labcore.middleware_off import middleware_without
from labcore.proxy import trusted_networks
from labcore.registry import ConfigError

SITE_DIR = Path(__file__).resolve().parent
BASE_DIR = SITE_DIR.parent

# STATE: the SQLite database (password hashes, session keys), file sessions
# and logs are for the site's user alone. umask 077 makes every file this
# process creates (SQLite's, whose modes Python cannot pass) 0600 from its
# first byte; the folder itself is closed too, if it was not already.
os.umask(0o077)
STATE_DIR = Path(os.environ.get("STATE_DIR", BASE_DIR / "state"))
STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
STATE_DIR.chmod(0o700)


def env_bool(name, default):
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name, default=""):
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_float(name, default):
    value = os.environ.get(name)
    try:
        return float(value) if value else default
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None


# CORE
# https://docs.djangoproject.com/en/6.1/ref/settings/#core-settings

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "Set SECRET_KEY (the same value on every instance), or DEBUG=1 for a local try."
        )
    SECRET_KEY = "insecure-development-key-shared-by-all-local-instances"
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")
INSTANCE_NAME = os.environ.get("INSTANCE_NAME") or f"{socket.gethostname()}-{os.getpid()}"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "accounts",
    "chat",
    "maintenance",
]

MIDDLEWARE = [
    "labcore.middleware.ServedByMiddleware",
    "labcore.proxy.ProxyMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "labcore.middleware.StoreFailureMiddleware",
    "labcore.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "accounts.middleware.CachedAuthenticationMiddleware",
    "accounts.middleware.BearerTokenMiddleware",
    "accounts.middleware.IdleTimeoutMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
# MIDDLEWARE_OFF: layers to leave out, `+`-separated, or `all` (labcore/middleware_off.py), to measure what
# each costs (`python -m loadtest bench --stores memory,memory:MIDDLEWARE_OFF=all`). Benchmarks only: each
# layer left out switches a protection off. Empty, the default: every layer.
MIDDLEWARE = middleware_without(MIDDLEWARE, os.environ.get("MIDDLEWARE_OFF", ""))

ROOT_URLCONF = "labsite.urls"
WSGI_APPLICATION = "labsite.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [SITE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "labsite.context_processors.status_bar",
            ],
        },
    },
]

# DATABASES
# SQLite in WAL mode lets several processes on one host read while one
# writes; IMMEDIATE transactions take the write lock up front, so two
# instances never deadlock upgrading a read lock. A writer waits at most
# 2 s for the lock, then the request gets a 503.
# https://docs.djangoproject.com/en/6.1/ref/databases/#database-is-locked-errors
# DURABLE (on by default): a message is acknowledged only once its commit is
# on disk, synchronous=FULL, which syncs the WAL at every commit. DURABLE=0
# (synchronous=NORMAL) is for benchmarks: an OS crash or power cut may then
# lose the last acknowledged commits. https://www.sqlite.org/pragma.html#pragma_synchronous
# PostgreSQL: 2 s is libpq's shortest connect timeout; tcp_user_timeout
# (DATABASE_TCP_USER_TIMEOUT seconds, 2 by default) drops a connection whose
# peer stopped acknowledging. A longer one lets a write sent into a network
# cut arrive once the cut heals (the late-write fencing experiment).
DATABASE_TCP_USER_TIMEOUT = env_float("DATABASE_TCP_USER_TIMEOUT", 2)

DURABLE = env_bool("DURABLE", True)
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{STATE_DIR / 'site.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        "init_command": f"PRAGMA journal_mode=WAL; PRAGMA synchronous={'FULL' if DURABLE else 'NORMAL'};",
        "transaction_mode": "IMMEDIATE",
        "timeout": 2,
    }
else:
    # Django's own backend, with commits bounded by DATABASE_COMMIT_TIMEOUT (labcore/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "labcore.postgresql"
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"connect_timeout": 2, "tcp_user_timeout": int(DATABASE_TCP_USER_TIMEOUT * 1000), "keepalives_idle": 5}
    )
# A commit still waiting after DATABASE_COMMIT_TIMEOUT seconds (for synchronous
# standbys that died) is cancelled and answered with a 503 naming the
# database; 0, the default, never waits for a timer. deploy sets it to
# COMMIT_TIMEOUT (deploy/kinds/postgres.py) in clusters with --pg-sync.
DATABASE_COMMIT_TIMEOUT = env_float("DATABASE_COMMIT_TIMEOUT", 0)
# With standbys, DATABASE_FAILOVER_HOSTS (host:port,...) lists the other
# nodes: libpq tries each in turn and keeps the one that accepts writes, so
# after a promotion the instances find the new primary on their next
# connection, and CONN_HEALTH_CHECKS drops a connection that broke.
# https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-MULTIPLE-HOSTS
DATABASE_FAILOVER_HOSTS = env_list("DATABASE_FAILOVER_HOSTS")
if DATABASE_FAILOVER_HOSTS and DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
    _nodes = [f"{DATABASES['default']['HOST']}:{DATABASES['default']['PORT'] or 5432}", *DATABASE_FAILOVER_HOSTS]
    DATABASES["default"]["HOST"] = ",".join(node.rsplit(":", 1)[0] for node in _nodes)
    DATABASES["default"]["PORT"] = ",".join(node.rsplit(":", 1)[1] for node in _nodes)
    DATABASES["default"]["OPTIONS"]["target_session_attrs"] = "read-write"

# STORES: the lab's two switches
# A failed store must fail fast: every client gets this socket timeout.

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
# REDIS_PASSWORD, when set, replaces the password in REDIS_URL: Kubernetes
# gives it from a Secret, and the URL from a ConfigMap.
if os.environ.get("REDIS_PASSWORD"):
    try:
        REDIS_URL = with_password(REDIS_URL, os.environ["REDIS_PASSWORD"])
    except ValueError as bad:
        raise ImproperlyConfigured(str(bad)) from None
MEMCACHED_URL = os.environ.get("MEMCACHED_URL", "memcached://127.0.0.1:11211")
# etcd's members, host:port of their client URLs, comma-separated: any of them
# serves. deploy's members take only a client certificate of their cluster's
# own authority: ETCD_CA (that authority), ETCD_CERT and ETCD_KEY (the
# site's certificate and key), paths that deploy gives. Without them, plain
# HTTP to an etcd that asks for nothing.
try:
    ETCD_ENDPOINTS = parse_etcd_endpoints(os.environ.get("ETCD_ENDPOINTS", "127.0.0.1:2379"))
    ETCD_CA, ETCD_CERT, ETCD_KEY = parse_etcd_tls(*(os.environ.get(name, "") for name in ("ETCD_CA", "ETCD_CERT",
                                                                                        "ETCD_KEY")))
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
STORE_TIMEOUT = env_float("STORE_TIMEOUT", 0.5)
# After a store fails, calls to it fail at once for this many seconds before
# one call tries it again (labcore/stores.py), so a hung store costs a
# request at most one STORE_TIMEOUT instead of starving the instance's
# threads. Short: a store that is back waits this long to be used. 0: off.
STORE_BREAKER_INTERVAL = env_float("STORE_BREAKER_INTERVAL", 1.0)

# Redis under Sentinel: REDIS_SENTINELS=host:port,host:port and the service
# they watch; REDIS_URL then gives only the database number (and password).
# REDIS_SYNC replicas must confirm each session write and logout (WAIT)
# within REDIS_SYNC_TIMEOUT seconds, or the request is a 503 naming Redis.
# The WAIT must answer before the socket gives up: at most half of
# STORE_TIMEOUT (its default), else the site refuses to start.
# https://redis.io/docs/latest/operate/oss_and_stack/management/sentinel/
REDIS_SENTINELS = parse_addresses(os.environ.get("REDIS_SENTINELS", ""))
REDIS_SERVICE = os.environ.get("REDIS_SERVICE", "lab")
# The Sentinels' own password (deploy gives them the nodes' one); empty if they ask for none.
REDIS_SENTINEL_PASSWORD = os.environ.get("REDIS_SENTINEL_PASSWORD", "")
REDIS_SYNC = int(env_float("REDIS_SYNC", 0))
REDIS_SYNC_TIMEOUT = env_float("REDIS_SYNC_TIMEOUT", STORE_TIMEOUT / 2)
# Redis Cluster: REDIS_CLUSTER_NODES=host:port,host:port, any of its nodes;
# REDIS_URL then gives only the password. Every Redis user goes through
# redis-py's RedisCluster (labcore/connections.py).
# https://redis.io/docs/latest/operate/oss_and_stack/management/scaling/
REDIS_CLUSTER_NODES = parse_addresses(os.environ.get("REDIS_CLUSTER_NODES", ""))

# How long an instance trusts the Sentinels' answer about the primary before
# it asks again on handing out a pooled connection: milliseconds, `connection`
# (only when a connection opens: redis-py's own) or `forever` (once per
# process). See docs/experiments/fate.md, "A cached fact outliving its owner".
REDIS_PRIMARY_CACHE = os.environ.get("REDIS_PRIMARY_CACHE", "500")
try:
    parse_primary_cache(REDIS_PRIMARY_CACHE)
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None

try:
    STORES = store_settings(
        session_store=os.environ.get("SESSION_STORE", "memory"),
        presence_store=os.environ.get("PRESENCE_STORE", "memory"),
        session_engine=os.environ.get("SESSION_ENGINE"),
        redis_url=REDIS_URL,
        memcached_url=MEMCACHED_URL,
        state_dir=STATE_DIR,
        timeout=STORE_TIMEOUT,
        redis_sentinels=REDIS_SENTINELS,
        redis_service=REDIS_SERVICE,
        redis_sentinel_password=REDIS_SENTINEL_PASSWORD,
        redis_sync=REDIS_SYNC,
        redis_sync_timeout=REDIS_SYNC_TIMEOUT,
        redis_cluster_nodes=REDIS_CLUSTER_NODES,
        redis_primary_cache=REDIS_PRIMARY_CACHE,
    )
except ConfigError as exc:
    raise ImproperlyConfigured(str(exc)) from None
# SESSION_STORE, SESSION_ENGINE, PRESENCE_STORE, CACHES, SERVERS and the rest.
globals().update(STORES)
# The file engine's folder, made at start whatever the store; one that goes
# missing later is a 503 (labcore/sessions/file.py).
Path(STORES["SESSION_FILE_PATH"]).mkdir(mode=0o700, parents=True, exist_ok=True)

# WEBSOCKETS (chat/consumers.py, served by an ASGI server: site/asgi.py)
# CHANNEL_LAYER: `memory` (each instance reaches only its own sockets) or
# `redis` (every instance's, through REDIS_URL or its Sentinels); by default
# `redis` when presence is in a Redis that is no cluster, `memory`
# otherwise. `redis` on Redis Cluster is refused. See docs/design/websockets.md.
# https://channels.readthedocs.io/en/latest/topics/channel_layers.html
# SOCKET_EXPIRY: how long a socket's group membership (Redis layer) and its
# presence entry last without a refresh; each open socket refreshes both
# every third of it, so a killed instance's sockets leave their rooms and
# the online list within it. channels-redis's own default is a day.
SOCKET_EXPIRY = int(env_float("SOCKET_EXPIRY", 30))
try:
    globals().update(channel_layer_settings(os.environ.get("CHANNEL_LAYER", ""),
                                            presence_store=STORES["PRESENCE_STORE"],
                                            redis_target=STORES["REDIS_TARGET"], socket_expiry=SOCKET_EXPIRY))
except ConfigError as exc:
    raise ImproperlyConfigured(str(exc)) from None
# The ASGI application's WebSocket routes and the middleware that checks their
# handshake's Origin and login, by name: the shell imports no app.
WEBSOCKET_ROUTES = "chat.routing"
WEBSOCKET_MIDDLEWARE = "accounts.sockets.SocketAuthMiddleware"
ASGI_APPLICATION = "labsite.asgi.application"

# SESSIONS AND AUTHENTICATION

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
SESSION_COOKIE_AGE = int(env_float("SESSION_COOKIE_AGE", 14 * 24 * 3600))
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
CSRF_FAILURE_VIEW = "labcore.errors.csrf_failure"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:rooms"
LOGOUT_REDIRECT_URL = "login"

# Password hashing: Django's PBKDF2, with its round count unless
# PASSWORD_ITERATIONS says otherwise (the load test lowers it; see
# accounts/hashers.py).
PASSWORD_ITERATIONS = int(env_float("PASSWORD_ITERATIONS", 0))
if PASSWORD_ITERATIONS:
    PASSWORD_HASHERS = ["accounts.hashers.TunablePBKDF2PasswordHasher"]

# Idle logout: a login lapses after this many seconds without a request
# (besides SESSION_COOKIE_AGE, the absolute limit); 0 turns it off. The
# session records activity at most once per IDLE_TIMEOUT / 10.
IDLE_TIMEOUT = env_float("IDLE_TIMEOUT", 900)

# A session's user is kept in the process this long instead of being read
# from the database on every request (accounts/middleware.py); a logout takes
# effect at once, a password change made elsewhere within this time. 0: off.
USER_CACHE_SECONDS = env_float("USER_CACHE_SECONDS", 1)

# Bearer tokens for /api/: signed and expiring, checked without any session.
API_TOKEN_MAX_AGE = int(env_float("API_TOKEN_MAX_AGE", 3600))

# Login throttling (accounts/throttle.py): at most LOGIN_MAX_FAILURES failed
# logins per (username, client address) and LOGIN_MAX_FAILURES_PER_ADDRESS
# per client address in a window of LOGIN_FAILURE_WINDOW seconds, counted in
# the shared store (per process when there is none).
LOGIN_MAX_FAILURES = int(env_float("LOGIN_MAX_FAILURES", 5))
LOGIN_MAX_FAILURES_PER_ADDRESS = int(env_float("LOGIN_MAX_FAILURES_PER_ADDRESS", 50))
LOGIN_FAILURE_WINDOW = int(env_float("LOGIN_FAILURE_WINDOW", 300))

# CLIENT ADDRESSES (labcore/proxy.py)
# REMOTE_ADDR, or the right-most X-Forwarded-For entry when the request
# carries X-Lab-Proxy-Secret equal to PROXY_SECRET (`deploy` generates one
# per cluster and HAProxy sets the header), or when REMOTE_ADDR is in
# TRUSTED_PROXIES (addresses or networks, for an ingress that cannot set a
# secret). Trusting a proxy that does not set X-Forwarded-For itself lets
# clients pick their address.
PROXY_SECRET = os.environ.get("PROXY_SECRET", "")
TRUSTED_PROXIES = env_list("TRUSTED_PROXIES")
try:
    trusted_networks(TRUSTED_PROXIES)
except ValueError as bad:
    raise ImproperlyConfigured(str(bad)) from None
# Sign-ups (accounts/throttle.py): at most SIGNUP_MAX_PER_ADDRESS accounts per
# client address (as above) in a window of SIGNUP_WINDOW seconds; each costs a
# password hash. The load test creates its users beforehand instead.
SIGNUP_MAX_PER_ADDRESS = int(env_float("SIGNUP_MAX_PER_ADDRESS", 10))
SIGNUP_WINDOW = int(env_float("SIGNUP_WINDOW", 3600))

# Passwords chosen at sign-up must pass Django's validators; the form shows
# their messages. https://docs.djangoproject.com/en/6.1/topics/auth/passwords/#password-validation
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# HTTPS BEHIND A TLS TERMINATOR
# The defaults suit plain http on one machine. Behind a proxy that ends TLS,
# set SECURE_COOKIES=1 (or the two cookie settings apart), SECURE_SSL_REDIRECT=1,
# SECURE_PROXY_SSL_HEADER=HTTP_X_FORWARDED_PROTO,https (only if the proxy
# always sets that header: a client could send it otherwise),
# CSRF_TRUSTED_ORIGINS=https://your.host and SECURE_HSTS_SECONDS (start small:
# browsers remember it). `manage.py check --deploy` is then clean.
# https://docs.djangoproject.com/en/6.1/howto/deployment/checklist/#https

SECURE_COOKIES = env_bool("SECURE_COOKIES", False)
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", SECURE_COOKIES)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", SECURE_COOKIES)
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", False)
# Health checks come over plain http from the load balancer: never redirect them.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
_proxy_ssl_header = env_list("SECURE_PROXY_SSL_HEADER")
if _proxy_ssl_header and len(_proxy_ssl_header) != 2:
    raise ImproperlyConfigured("SECURE_PROXY_SSL_HEADER must be 'HEADER,value', e.g. HTTP_X_FORWARDED_PROTO,https")
SECURE_PROXY_SSL_HEADER = tuple(_proxy_ssl_header) or None
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")
SECURE_HSTS_SECONDS = int(env_float("SECURE_HSTS_SECONDS", 0))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)

# PRESENCE
# A heartbeat every interval; a user stays online through two lost beats
# (and the third's own interval), plus a little slack for a slow request.

PRESENCE_HEARTBEAT_INTERVAL = env_float("PRESENCE_HEARTBEAT_INTERVAL", 5)
PRESENCE_TTL = 3 * PRESENCE_HEARTBEAT_INTERVAL + 1

# MAINTENANCE
# Once per MAINTENANCE_PERIOD, cluster-wide, the holder of a lease in Redis
# clears expired sessions and writes the rooms' activity rollup. The lease
# lives LEASE_TTL and is renewed every LEASE_TTL / 3; an instance without it
# tries again every LEASE_RETRY, so a dead holder is replaced within
# LEASE_TTL + LEASE_RETRY. Needs Redis, so it is on when Redis is in use.
# MAINTENANCE_WORK_SECONDS stretches each job, for tests and demos of fencing.

MAINTENANCE = env_bool("MAINTENANCE", "redis" in STORES["SERVERS"])
LEASE_TTL = env_float("LEASE_TTL", 6)
LEASE_RETRY = env_float("LEASE_RETRY", 1)
MAINTENANCE_PERIOD = int(env_float("MAINTENANCE_PERIOD", 10))
MAINTENANCE_WORK_SECONDS = env_float("MAINTENANCE_WORK_SECONDS", 0)
if LEASE_TTL <= 0 or LEASE_RETRY <= 0 or MAINTENANCE_PERIOD < 1:
    raise ImproperlyConfigured("LEASE_TTL and LEASE_RETRY must be positive, MAINTENANCE_PERIOD at least 1")
# Rollup rows (only active rooms get one) and runs older than this are
# deleted by the maintenance job.
ROLLUP_RETENTION = env_float("ROLLUP_RETENTION", 7 * 24 * 3600)
if ROLLUP_RETENTION < MAINTENANCE_PERIOD:
    raise ImproperlyConfigured("ROLLUP_RETENTION must be at least MAINTENANCE_PERIOD")
# The rollup asks presence for at most this many rooms per period, the most
# recently posted to first (chat/maintenance.py).
ROLLUP_MAX_ROOMS = int(env_float("ROLLUP_MAX_ROOMS", 1000))

# ROOMS
# Posting to a new name creates a room; a user may create at most
# ROOM_CREATION_LIMIT rooms per ROOM_CREATION_WINDOW seconds (a 429 past it),
# and the site holds at most ROOM_LIMIT rooms in all (a 403 past it).

ROOM_CREATION_LIMIT = int(env_float("ROOM_CREATION_LIMIT", 10))
ROOM_CREATION_WINDOW = env_float("ROOM_CREATION_WINDOW", 3600)
ROOM_LIMIT = int(env_float("ROOM_LIMIT", 10_000))

# BENCHMARK
# BENCH_VIEWS=1 serves /bench/floor/<poll|heartbeat|me> (chat/floor.py): the
# poll mix's store round trips without our code around them, for
# `python -m loadtest bench`. It writes a fixed key in the stores: off on a
# site in use.

BENCH_VIEWS = env_bool("BENCH_VIEWS", False)

# STATIC FILES
# WhiteNoise serves them from the app folders, so no collectstatic step.

STATIC_URL = "static/"
STATICFILES_DIRS = [SITE_DIR / "static"]
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# LOGGING: one line per event on stderr, which gunicorn keeps per instance.

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": f"%(asctime)s {INSTANCE_NAME} %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["stderr"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}

USE_TZ = True
TIME_ZONE = "UTC"
