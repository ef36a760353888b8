#!/usr/bin/env bash
# Set up this checkout on a fresh Debian 12 machine: the store servers and
# the load balancer from Debian's packages, then Python 3.12+ packages into
# .venv. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pair in redis-server:redis-server memcached:memcached haproxy:haproxy chromium:chromium wrk:wrk etcd:etcd-server nft:nftables ip:iproute2; do
    command -v "${pair%%:*}" >/dev/null || [[ -x /usr/sbin/${pair%%:*} ]] || missing+=("${pair##*:}")
done
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=(postgresql)
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
echo "setup: done; activate with: source .venv/bin/activate"
