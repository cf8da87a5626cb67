#!/usr/bin/env python3
"""Serve and Ray Serve 2.60, side by side on this machine (issue 18).

Run it from the repository root after `cargo build --release -p fabric-cli`
(needs `wrk` from Debian and a virtualenv with `ray[serve]==2.60.0`):

    python3 benches/serve_side_by_side.py --ray-venv DIR [--duration 10]

A no-op deployment (a Python replica whose handler returns `{}`, sent as
JSON) with 1 and 2 replicas, each replica holding half a CPU, on each
system in turn; `wrk` (HTTP/1.1, keep-alive, one thread) pinned to CPU 0
with `taskset`, the servers free to use both CPUs, at 1, 16 and 64
connections for `--duration` seconds each after a 2 s warm-up: requests
per second, wrk's p50 and p99 latency, and the requests wrk gave up on
after its 2 s timeout. Prints a markdown table.

Then ours alone: a deployment scaled to zero (`min_replicas = 0`), its
first request timed `--cold-starts` times from the client's side (Python's
http.client on a fresh connection), each once the ingress's metrics say no
replica is left: the goal is an answer within 50 ms.
"""

import argparse
import datetime
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import http.client
import statistics

CONNECTIONS = [1, 16, 64]
REPLICAS = [1, 2]

OURS_APP = '''
import fabric

@fabric.remote
class Noop:
    def call(self, request):
        return {}
'''

OURS_CONFIG = '''
[ingress]
listen = "127.0.0.1:{port}"

[[deployment]]
name = "noop"
component = "noop.py"
class = "Noop"
route = "/"
replicas = {replicas}
num_cpus = 0.5
max_queued_requests = 100000
public = true
'''

RAY_APP = '''
import sys, time
import ray
from ray import serve

ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
serve.start(http_options={{"host": "127.0.0.1", "port": {port}}})

@serve.deployment(num_replicas={replicas}, ray_actor_options={{"num_cpus": 0.5}})
class Noop:
    def __call__(self, request):
        return {{}}

serve.run(Noop.bind(), route_prefix="/")
print("ready", flush=True)
while True:
    time.sleep(3600)
'''


def wrk(url, connections, duration):
    """(requests/s, p50 ms, p99 ms, requests wrk gave up on) of one wrk run
    on CPU 0 (wrk gives up on a request after 2 s: such requests count in
    no rate and no percentile, so they are shown beside them)."""
    subprocess.run(["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", "-d2s", url],
                   capture_output=True, check=True)
    out = subprocess.run(
        ["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--latency", url],
        capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        sys.exit(f"wrk saw {errors.group(1)} error responses from {url}:\n{out}")
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    lost = sum(int(g) for g in socket.groups()) if socket else 0
    return rate, pct(50), pct(99), lost


def wait_for(proc, needle, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        if needle in line:
            return line
    proc.kill()
    sys.exit(f"the server never printed {needle!r}")


def stop(proc):
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run_ours(fabric, replicas, port, duration, work):
    with open(os.path.join(work, "noop.py"), "w") as f:
        f.write(OURS_APP)
    config = os.path.join(work, "serve.toml")
    with open(config, "w") as f:
        f.write(OURS_CONFIG.format(port=port, replicas=replicas))
    proc = subprocess.Popen([fabric, "serve", config], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(proc, "serving on", 300)
        return {c: wrk(f"http://127.0.0.1:{port}/", c, duration) for c in CONNECTIONS}
    finally:
        stop(proc)


COLD_CONFIG = '''
[ingress]
listen = "127.0.0.1:{port}"
metrics_token_file = "token"

[[deployment]]
name = "noop"
component = "noop.py"
class = "Noop"
route = "/"
num_cpus = 0.5
public = true

[deployment.autoscaling]
min_replicas = 0
max_replicas = 1
downscale_delay = "500ms"
look_back = "200ms"
'''

COLD_TOKEN = "a-token-for-the-cold-start-bench"


def replicas_now(port):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/-/metrics", headers={"Authorization": f"Bearer {COLD_TOKEN}"})
    text = conn.getresponse().read().decode()
    conn.close()
    live = re.search(r'^fabric_serve_replicas\{deployment="noop"\} (\S+)', text, re.M)
    starting = re.search(r'^fabric_serve_replicas_starting\{deployment="noop"\} (\S+)', text, re.M)
    return float(live.group(1)) + float(starting.group(1))


def cold_starts(fabric, port, work, n):
    """Milliseconds to the first answer of a deployment scaled to zero."""
    with open(os.path.join(work, "noop.py"), "w") as f:
        f.write(OURS_APP)
    with open(os.path.join(work, "token"), "w") as f:
        f.write(COLD_TOKEN)
    config = os.path.join(work, "cold.toml")
    with open(config, "w") as f:
        f.write(COLD_CONFIG.format(port=port))
    proc = subprocess.Popen([fabric, "serve", config], stdout=subprocess.PIPE, text=True)
    times = []
    try:
        wait_for(proc, "serving on", 300)
        for _ in range(n):
            deadline = time.time() + 30
            while replicas_now(port) > 0:
                if time.time() > deadline:
                    sys.exit("the deployment never scaled to zero")
                time.sleep(0.1)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            started = time.perf_counter()
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            times.append((time.perf_counter() - started) * 1000)
            conn.close()
            if response.status != 200:
                sys.exit(f"the first request after zero got {response.status}")
    finally:
        stop(proc)
    return times


def run_ray(python, replicas, port, duration, work):
    script = os.path.join(work, "ray_noop.py")
    with open(script, "w") as f:
        f.write(RAY_APP.format(port=port, replicas=replicas))
    proc = subprocess.Popen([python, script], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(proc, "ready", 300)
        return {c: wrk(f"http://127.0.0.1:{port}/", c, duration) for c in CONNECTIONS}
    finally:
        stop(proc)
        subprocess.run([os.path.join(os.path.dirname(python), "ray"), "stop", "--force"],
                       capture_output=True)
        time.sleep(10)  # Ray's processes take a while to go: not in the next row's way


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ray-venv", required=True)
    ap.add_argument("--fabric", default="target/release/fabric")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--cold-starts", type=int, default=20)
    ap.add_argument("--only-cold-starts", action="store_true")
    args = ap.parse_args()
    if args.only_cold_starts:
        with tempfile.TemporaryDirectory() as work:
            report_cold_starts(cold_starts(os.path.abspath(args.fabric), 18433, work,
                                           args.cold_starts))
        return
    python = os.path.join(args.ray_venv, "bin", "python")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for replicas in REPLICAS:
            ours = run_ours(os.path.abspath(args.fabric), replicas, 18431, args.duration, work)
            ray = run_ray(python, replicas, 18432, args.duration, work)
            for c in CONNECTIONS:
                rows.append((replicas, c, ray[c], ours[c]))
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n{stamp} on {platform.machine()}, {os.cpu_count()} CPUs; wrk -t1 pinned to CPU 0, "
          f"{args.duration} s per row; a no-op deployment returning {{}}\n")
    print("| replicas | connections | Ray Serve req/s | ours req/s | ratio | "
          "Ray p50 / p99 ms | ours p50 / p99 ms | p99 ratio | gave up (Ray / ours) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for replicas, c, (rr, r50, r99, rl), (orate, o50, o99, ol) in rows:
        print(f"| {replicas} | {c} | {rr:,.0f} | {orate:,.0f} | {orate / rr:.1f}x | "
              f"{r50:.2f} / {r99:.2f} | {o50:.2f} / {o99:.2f} | {o99 / r99:.2f} | {rl} / {ol} |")
    with tempfile.TemporaryDirectory() as work:
        report_cold_starts(cold_starts(os.path.abspath(args.fabric), 18433, work,
                                       args.cold_starts))


def report_cold_starts(times):
    times.sort()
    print(f"\nScaled to zero, first request answered (ours, {len(times)} times): "
          f"p50 {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms (goal: 50 ms)")


if __name__ == "__main__":
    main()
