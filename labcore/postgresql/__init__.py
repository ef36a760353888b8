"""Django's PostgreSQL backend, with commits bounded in time (see base.py)."""
