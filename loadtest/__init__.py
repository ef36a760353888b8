"""Locust journeys and the kill experiment (issue 4)."""
