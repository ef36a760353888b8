#!/usr/bin/env bash
# Pin every Python dependency: resolve pyproject.toml's dependencies with its
# test, servers and docs extras again, for every Python this project supports
# (3.12 and 3.13, one file with markers where they differ), and rewrite
# constraints.txt, which scripts/setup.sh installs with. Run it after changing
# a dependency in pyproject.toml, and commit constraints.txt. Needs no input.
#
# The resolver is uv, pinned below, installed into a throwaway virtualenv
# under build/ (ignored by git); it is no dependency of the project.
set -euo pipefail
cd "$(dirname "$0")/.."

UV_VERSION=0.13.9
tool=build/lock-tool
if [[ ! -x $tool/bin/uv ]] || [[ $("$tool/bin/uv" --version | cut -d' ' -f2) != "$UV_VERSION" ]]; then
    rm -rf "$tool"
    python3 -m venv "$tool"
    "$tool/bin/python" -m pip install -q "uv==$UV_VERSION"
fi

"$tool/bin/uv" pip compile pyproject.toml \
    --extra test --extra servers --extra docs \
    --universal --python-version 3.12 \
    --no-header --quiet \
    --output-file constraints.txt
sed -i '1i # Every Python dependency, pinned: written by scripts/lock.sh from pyproject.toml\n# (extras test, servers, docs; Python 3.12 and 3.13). Do not edit by hand.' constraints.txt
echo "lock: constraints.txt written ($(grep -c '==' constraints.txt) pins)"
