"""Session engines that fail loudly when their store is down.

Django's cache engines treat a failed read as an empty session, so a store
outage silently logs every user out; here it is a 503 naming the store, and
the session is intact when the store comes back.
"""
