#!/usr/bin/env bash
# Set up this checkout on a fresh Debian 12 machine: the store servers and
# the load balancer from Debian's packages, then Python 3.12+ packages into
# .venv. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pair in redis-server:redis-server memcached:memcached haproxy:haproxy chromium:chromium wrk:wrk etcd:etcd-server openssl:openssl nft:nftables ip:iproute2 fusermount3:fuse3 patroni:patroni; do
    command -v "${pair%%:*}" >/dev/null || [[ -x /usr/sbin/${pair%%:*} ]] || missing+=("${pair##*:}")
done
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
# The Docker Swarm runtime (docs/operations/swarm.md), only when asked for: SWARM=1 bash scripts/setup.sh
if [[ ${SWARM:-0} == 1 ]]; then
    for pair in dockerd:docker.io iptables:iptables mmdebstrap:mmdebstrap; do
        command -v "${pair%%:*}" >/dev/null || [[ -x /usr/sbin/${pair%%:*} ]] || missing+=("${pair##*:}")
    done
fi
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        echo "setup: missing ${missing[*]}; run: sudo apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
    echo "setup: installing ${missing[*]} from Debian's packages"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi

find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3 /root/.pyenv/versions/3.1[2-9]*/bin/python3; do
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            echo "$candidate"
            return
        fi
    done
    echo "setup: no Python 3.12 or newer found; install one and put it on PATH" >&2
    exit 1
}

if [[ ! -x .venv/bin/python ]]; then
    python=$(find_python)
    echo "setup: creating .venv with $($python --version)"
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# Every package at the version constraints.txt pins (scripts/lock.sh writes it).
.venv/bin/python -m pip install -q --constraint constraints.txt -e ".[test,servers,docs]"

# Django's own session tests, which tests/test_django_sessions.py runs against
# every engine: from the source release of the installed Django (its wheel has
# no tests), kept in .venv, never in the repository.
django_version=$(.venv/bin/python -c 'import django; print(django.__version__)')
django_tests=.venv/django-tests/$django_version
if [[ ! -f $django_tests/sessions_tests/tests.py ]]; then
    echo "setup: fetching Django $django_version's session tests from its source release"
    download=$(mktemp -d)
    .venv/bin/python -m pip download -q --no-binary :all: --no-deps "django==$django_version" -d "$download"
    mkdir -p "$django_tests"
    tar -xzf "$download/django-$django_version.tar.gz" -C "$django_tests" --strip-components=2 \
        "django-$django_version/tests/sessions_tests"
    rm -rf "$download"
fi
echo "setup: done; activate with: source .venv/bin/activate"
