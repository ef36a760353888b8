"""A made-up kind of server, to show that deploy takes a new kind up from one module, one row and a slot range.

The kind is made up, its parts are not: a real Redis, started by deploy's
own code, under another name and setting. The row that needs it is a
database in name only (`twin_db`): the site never reads the database's
name, only DATABASE_URL, so the instances keep SQLite and ignore TWIN_URL,
while deploy plans, starts, asks, breaks, mends and stops the node.
"""

import redis

from deploy.cluster import Kind, start_server
from labcore import registry


class Twin(Kind):
    name = server = "twin"
    variables = ("TWIN_URL",)

    def start_node(self, cluster, name, port, password):
        return start_server("redis", port=port, state_dir=cluster.path, password=password)

    def start_alone(self, *, port, state_dir, password, durable=True):
        return start_server("redis", port=port, state_dir=state_dir, password=password)

    def role(self, record):
        try:
            with redis.Redis(port=record["port"], password=record["password"], socket_timeout=1) as client:
                return "primary" if client.ping() else "down"
        except redis.RedisError:
            return "down"

    def url(self, record):
        return f"redis://:{record['password']}@127.0.0.1:{record['port']}/0"


KIND = Twin()
SLOTS = range(27, 30)  # free in the port plan: after the instances' 11 to 26, before the stores' 30
TWIN_DB = registry.Database("twin_db", servers=("twin",), summary="made up by the kind test")
