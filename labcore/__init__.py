"""The site's shared library: the API edge, store errors and clients, session engines, the store registry.

It imports no app and not the project shell (site/, imported as `labsite`);
apps import it, and register what the shell must run for them (readiness
checks, background work) through `labcore.health` and `labcore.serving`.
"""
