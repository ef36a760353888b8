"""The made-up session store's row, for tests that add it to the registry themselves (monkeypatch) and for the
plugin tests/made_up_store.py, which registers it for a whole run. Importing this module registers nothing."""

from labcore import registry

ROW = registry.SessionStore(
    "redis_twin", "labcore.sessions.redis", servers=("redis",), cache="redis",
    presence="memory", summary="made up by the registry tests",
)
