"""What a cluster's instances take from the servers they share: the arithmetic in one place.

Each instance is one gunicorn process with THREADS threads. The site keeps
a database connection per thread for CONN_MAX_AGE (60 s) after its last
use, rather than one per request, and the maintenance scheduler's thread
keeps one more: an instance holds up to THREADS + 1 connections.
PostgreSQL's max_connections is sized for MAX_INSTANCES of them, whatever
`up` starts, since `scale` may add instances later without a restart.
"""

MAX_INSTANCES = 16
THREADS = 8
DB_CONNECTIONS_PER_INSTANCE = THREADS + 1
# migrate, an operator's psql, a benchmark or a test reading the database.
DB_HEADROOM = 10
POSTGRES_MAX_CONNECTIONS = MAX_INSTANCES * DB_CONNECTIONS_PER_INSTANCE + DB_HEADROOM  # 154
