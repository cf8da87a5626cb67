#!/bin/bash
# A deployment handle's call across nodes against one on one node: `front`
# calls `echo` through a handle for each request (tests/programs/python/
# serve_echo.py), measured with wrk -t1 pinned to CPU 0, 8 s per row.
#
#   benches/serve_handles.sh FABRIC      (needs wrk: apt-get install wrk)
#
# One node runs both replicas; then a cluster of a head (no CPUs), a worker
# (2 CPUs: every replica) and the serve node (no CPUs), so each handle call
# asks the serve node for its place and the call goes to the worker.
set -e
B=$(realpath "$1")
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
cd "$work"
export PATH=$HOME/.local/bin:$PATH
$B build "$repo/tests/programs/python/serve_echo.py" -o echo.wasm >/dev/null 2>&1
cat > cfg.toml <<T
[[deployment]]
name = "echo"
component = "$work/echo.wasm"
class = "Echo"
route = "/echo"
num_cpus = 0.5
max_ongoing_requests = 16
public = true

[[deployment]]
name = "front"
component = "$work/echo.wasm"
class = "Front"
route = "/front"
num_cpus = 0.5
max_ongoing_requests = 16
public = true
T
measure() { # label url
  for c in 1 16; do
    out=$(taskset -c 0 wrk -t1 -c$c -d8s --latency "$2" 2>&1)
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    bad=$(echo "$out" | awk "/Non-2xx/ {print \$NF}"); echo "$1 c=$c req/s=$rps p50=$p50 p99=$p99 non2xx=${bad:-0}"
  done
}
serve_url() { # logfile -> url
  for i in $(seq 1 300); do u=$(grep -o 'serving on .*' "$1" | head -1 | cut -d' ' -f3); [ -n "$u" ] && { echo $u; return; }; sleep 0.1; done
}
# One node.
$B serve cfg.toml --listen 127.0.0.1:0 --num-cpus 2 > one.out 2>one.err & S=$!
U=$(serve_url one.out); sleep 2
curl -s $U/front/echo/x; echo
measure "one node, /echo (direct)" $U/echo/x
measure "one node, /front -> echo" $U/front/echo/x
kill $S; wait $S 2>/dev/null || true
# Cluster: head (no CPUs), worker (2 CPUs, every replica), serve node (no CPUs).
$B start --block --head --port 0 --num-cpus 0 --data-dir d0 >/dev/null 2>h.err & H=$!
for i in $(seq 1 100); do ls d0/nodes/* >/dev/null 2>&1 && break; sleep 0.1; done
HA=$(cat d0/nodes/* | awk '{print $2}')
$B start --block --address $HA --join-file d0/security/cluster.join --num-cpus 2 --data-dir d1 >/dev/null 2>w.err & W=$!
sleep 2
$B serve cfg.toml --listen 127.0.0.1:0 --address $HA --join-file d0/security/cluster.join --num-cpus 0 > c.out 2>c.err & S=$!
U=$(serve_url c.out); sleep 3
curl -s $U/front/-node; echo; curl -s $U/front/echo/x; echo
measure "cluster, /echo (direct, replica on the worker)" $U/echo/x
measure "cluster, /front -> echo (handle across nodes)" $U/front/echo/x
kill $S $W $H; wait 2>/dev/null || true
