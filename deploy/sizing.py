"""What a cluster's instances take from the servers they share: the arithmetic in one place.

Each instance is one process serving THREADS requests at once under the
default server (gthread:8, deploy/web.py). The site keeps a database
connection per thread for CONN_MAX_AGE (60 s) after its last use, rather
than one per request, and the maintenance scheduler's thread keeps one
more: an instance holds up to THREADS + 1 connections. PostgreSQL's
max_connections is sized for MAX_INSTANCES of them, whatever `up` starts,
since `scale` may add instances later without a restart; a server that
serves more at once (`db_connections(server)`) is refused with PostgreSQL.
"""

MAX_INSTANCES = 16
THREADS = 8
DB_CONNECTIONS_PER_INSTANCE = THREADS + 1
# migrate, an operator's psql, a benchmark or a test reading the database.
DB_HEADROOM = 10
POSTGRES_MAX_CONNECTIONS = MAX_INSTANCES * DB_CONNECTIONS_PER_INSTANCE + DB_HEADROOM  # 154


def db_connections(concurrency):
    """Database connections an instance serving `concurrency` requests at once may hold."""
    return concurrency + 1
