#!/bin/bash
# Interleaved A/B of two builds of the microbenchmark, as benches/README.md
# describes: each build's binary (target/release/deps/microbenchmark-*,
# copied aside after `cargo bench --no-run --bench microbenchmark` in each
# checkout) runs alternately, ROUNDS times, on the same metrics; then
# `python3 benches/ab_compare.py OUTDIR` prints each metric's rounds and
# medians.
#
#   benches/ab.sh MAIN_BINARY NEW_BINARY ROUNDS METRICS OUTDIR
set -euo pipefail
main=$1; new=$2; rounds=$3; metrics=$4; out=$5
mkdir -p "$out"
for i in $(seq 1 "$rounds"); do
  "$main" --ray-only --only "$metrics" --runs 3 --json "$out/main-$i.json" > "$out/main-$i.txt" 2>&1
  "$new" --ray-only --only "$metrics" --runs 3 --json "$out/new-$i.json" > "$out/new-$i.txt" 2>&1
done
