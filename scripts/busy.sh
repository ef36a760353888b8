#!/usr/bin/env bash
# Run a command while CPU-bound loops keep cores busy, to check that tests do
# not depend on an idle machine. The loops end with the command, however it ends.
#
#   bash scripts/busy.sh .venv/bin/pytest tests/test_lease.py
#   BUSY_CORES=2 bash scripts/busy.sh .venv/bin/pytest
set -euo pipefail
cores=${BUSY_CORES:-1}
if (($# == 0)); then
    echo "usage: [BUSY_CORES=N] bash scripts/busy.sh COMMAND [ARG ...]" >&2
    exit 2
fi
loops=()
trap 'kill "${loops[@]}" 2>/dev/null || true' EXIT
for _ in $(seq "$cores"); do
    python3 -c 'while True: pass' &
    loops+=($!)
done
echo "busy.sh: $cores busy loop(s) running (pids ${loops[*]})" >&2
"$@"
