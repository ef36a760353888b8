"""The control room: one page to start a cluster, put load on it, break it, and watch what users lose, live.

`python -m control` serves it on loopback (control/__main__.py). A small
Django project of its own (control/settings.py, not the site's), under
uvicorn; it reaches the cluster through deploy.cluster only, and the load,
history and checkers are the experiment harness's (loadtest/harness/).
"""
