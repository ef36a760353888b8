"""Runs, inspects and breaks a local cluster of the site (issue 3)."""
