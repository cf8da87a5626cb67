#!/bin/bash
# Interleaved A/B of the Python SDK of two `fabric` binaries (the SDK is
# built into the binary, so benches/ab.sh, which A/Bs microbenchmark
# binaries that share one `fabric`, cannot compare it): each binary builds
# tests/programs/python/bench.py with its own SDK and runs the Python rows,
# alternately, ROUNDS times; then the median rate of each row per binary.
#
#   benches/python_ab.sh MAIN_FABRIC NEW_FABRIC [ROUNDS]
#
# ROWS="name:reps ..." picks other rows (e.g. python_single_client_tasks_async:2).
#
# Each binary keeps its build in its own cache (XDG_CACHE_HOME under
# target/python-ab), so neither reuses the other's component.
set -euo pipefail
main=$1; new=$2; rounds=${3:-5}
cd "$(dirname "$0")/.."
out=target/python-ab
rows="${ROWS:-python_1_1_actor_calls_sync:4000 python_1_1_actor_calls_async:8 python_single_client_tasks_sync:300}"
mkdir -p "$out"
: > "$out/rates"
for i in $(seq 1 "$rounds"); do
  for side in main new; do
    bin=$main; [ "$side" = new ] && bin=$new
    for row in $rows; do
      XDG_CACHE_HOME="$PWD/$out/cache-$side" "$bin" run tests/programs/python/bench.py \
        -- "${row%%:*}" "${row##*:}" 2>/dev/null | awk -v s="$side" '{ print s, $1, $2 / $3 }' >> "$out/rates"
    done
  done
done
python3 - "$out/rates" <<'PY'
import statistics, sys
rates = {}
for line in open(sys.argv[1]):
    side, row, rate = line.split()
    rates.setdefault(row, {}).setdefault(side, []).append(float(rate))
for row, sides in rates.items():
    m, n = statistics.median(sides["main"]), statistics.median(sides["new"])
    print(f"{row:<36} main {m:>9,.0f}  new {n:>9,.0f}  {n / m - 1:+.0%}  ({len(sides['new'])} rounds each)")
PY
