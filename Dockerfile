# The lab's two images, from one file with two targets:
#
#   docker build --target site    -t REGISTRY/stateful-lab-site:TAG .
#   docker build --target loadgen -t REGISTRY/stateful-lab-loadgen:TAG .
#
# On any machine that reaches Docker Hub and PyPI, as above: the base is the
# public python:3.12-slim. `python -m deploy images` builds both targets on a
# Debian 13 base of its own instead (BASE_IMAGE, made from Debian's packages)
# and installs from the wheels it downloaded into wheels/ (PIP_OPTIONS=--no-index):
# docs/operations/swarm.md. tests/test_container.py lints this file with
# hadolint, checks that every COPY source exists and that the images run as
# a user other than root, and builds the wheel the `build` stage installs.
ARG BASE_IMAGE=python:3.12-slim

# --- build: the project and its dependencies into a virtualenv ------------
FROM ${BASE_IMAGE} AS build
# --no-index with the wheels of wheels/ alone; empty: PyPI as well.
ARG PIP_OPTIONS=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# The project's own files only (.dockerignore keeps out the rest). psycopg
# and hiredis come as binary wheels, so the slim image needs no compiler.
COPY pyproject.toml README.md constraints.txt ./
COPY wheels/ /wheels/
COPY site/ site/
COPY labcore/ labcore/
COPY accounts/ accounts/
COPY chat/ chat/
COPY maintenance/ maintenance/
COPY deploy/ deploy/
COPY loadtest/ loadtest/
COPY control/ control/
# site/ is installed as the package labsite ([tool.setuptools.package-dir]);
# templates and static files travel in the wheel ([tool.setuptools.package-data]).
# The build fails here if the wheel came without the templates.
# Every dependency at the version constraints.txt pins, as on the host.
RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install ${PIP_OPTIONS} --find-links /wheels --constraint constraints.txt . \
    && /opt/venv/bin/python -c "import labsite, pathlib; assert (pathlib.Path(labsite.__file__).parent / 'templates' / 'base.html').is_file()"

# --- runtime: what both images share ------------------------------------------
FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=labsite.settings \
    STATE_DIR=/var/lib/lab
# A user of its own, not root; STATE_DIR is the one folder it writes (the
# settings create it at start; the manifests mount an emptyDir there).
RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent lab \
    && mkdir -p /var/lib/lab \
    && chown lab:lab /var/lib/lab
COPY --from=build /opt/venv /opt/venv

# --- site: one gunicorn process per container ---------------------------------
FROM runtime AS site
USER 10001:10001
EXPOSE 8000
# As deploy/web.py starts an instance (its default, gthread:8): one worker with 8 threads, since
# in memory mode the process is the unit of state (more workers would be
# more instances behind one pod address); keep-alive longer than the
# ingress keeps an idle upstream connection. INSTANCE_NAME comes from the
# pod's name (the Downward API, deploy/kubernetes/base/site.yaml).
CMD ["python", "-m", "gunicorn", "labsite.wsgi", \
     "--bind", "0.0.0.0:8000", \
     "--workers", "1", "--threads", "8", \
     "--graceful-timeout", "10", \
     "--keep-alive", "300", \
     "--worker-tmp-dir", "/dev/shm", \
     "--no-control-socket"]

# --- loadgen: Locust with the lab's journeys -------------------------------
FROM runtime AS loadgen
WORKDIR /opt/lab
# `locust -f loadtest/locustfiles/journeys.py`: the journeys alone (the folder
# would also load the capacity step's load shape); its helpers import from the
# installed package.
COPY loadtest/ loadtest/
USER 10001:10001
EXPOSE 8089 5557
ENTRYPOINT ["locust", "-f", "loadtest/locustfiles/journeys.py"]
CMD ["--help"]
