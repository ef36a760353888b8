"""Locust users: what `locust -f` loads."""
