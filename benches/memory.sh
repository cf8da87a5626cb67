#!/usr/bin/env bash
# What a node process holds while a job runs and after it ends: starts a
# one-node cluster (2 CPUs) with the given `fabric` binary, submits the
# tests' `breaches` guest with the given scenario, samples the head's
# resident memory every 100 ms, and prints its idle baseline, its peak
# during the job, and what it holds 5 s after the job ended.
#
#   cargo build --release --bin fabric && cargo test --no-run   # guests
#   benches/memory.sh target/release/fabric read-big 100 16
#   benches/memory.sh target/release/fabric touch 200 70
#   benches/memory.sh target/release/fabric burst 500 3
#   benches/memory.sh target/release/fabric burst 1000 3 2000 0   # 1,000 at once
#   benches/memory.sh target/release/fabric empty-puts
set -euo pipefail
bin=$(realpath "$1"); shift
root=$(cd "$(dirname "$0")/.." && pwd)
wasm="$root/target/guests/wasm32-wasip2/release/breaches.wasm"
[ -f "$wasm" ] || { echo "build the guests first: cargo test --no-run" >&2; exit 2; }
dir=$(mktemp -d)
trap 'kill $head $sampler 2>/dev/null; rm -rf "$dir"' EXIT
"$bin" start --head --port 0 --block --num-cpus 2 --data-dir "$dir/head" --heartbeat-ms 100 \
  >"$dir/log" 2>&1 &
head=$!
for _ in $(seq 200); do [ -f "$dir/head/nodes/$head" ] && break; sleep 0.1; done
address=$(awk '{print $2}' "$dir/head/nodes/$head")
export FABRIC_TOKEN=$(cat "$dir/head/security/admin.token")
export FABRIC_CA_CERT="$dir/head/security/ca.crt"
rss() { awk '/VmRSS/ {print int($2 / 1024)}' "/proc/$head/status"; }
sleep 1
baseline=$(rss)
( while kill -0 "$head" 2>/dev/null; do echo "$(date +%s.%N) $(rss)" >>"$dir/rss"; sleep 0.1; done ) &
sampler=$!
start=$(date +%s.%N)
"$bin" submit --address "$address" "$wasm" -- "$@" 2>/dev/null | tail -1
end=$(date +%s.%N)
sleep 6
peak=$(awk -v s="$start" -v e="$end" '$1 >= s && $1 <= e && $2 > m {m = $2} END {print m}' "$dir/rss")
after=$(awk -v e="$end" '$1 >= e + 5 {print $2; exit}' "$dir/rss")
echo "idle ${baseline} MiB, peak during the job ${peak} MiB, 5 s after it ${after} MiB"
