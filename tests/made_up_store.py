"""A pytest plugin that registers a made-up session store, before the test modules are collected.

`pytest -p tests.made_up_store` shows that the test matrix picks a new
registry row up with no other edit. The store is made up, its parts are
not: Redis through our Redis engine, under another name.
"""

from labcore import registry

ROW = registry.SessionStore(
    "redis_twin", "labcore.sessions.redis", servers=("redis",), cache="redis",
    presence="memory", summary="made up by the registry tests",
)
registry.register(ROW)
