"""A pytest plugin that registers a made-up session store, before the test modules are collected.

`pytest -p tests.made_up_store` shows that the test matrix picks a new
registry row up with no other edit. The store is made up, its parts are
not: Redis through our Redis engine, under another name.
"""

from labcore import registry
from tests.made_up_row import ROW

registry.register(ROW)
