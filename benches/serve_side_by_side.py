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

Then HTTP/2 with `h2load` (nghttp2-client in Debian), pinned the same way:
ours over h2c (`[ingress] h2c = true`) against Ray Serve over HTTP/1.1
(`h2load --h1`: Ray Serve's proxy, uvicorn, speaks no HTTP/2), one replica,
1, 16 and 64 connections of one stream each, and one connection of 64
streams (ours only); p50 and p99 from h2load's per-request log. And a
stateless deployment (an unchanged `wasi:http` component, a fresh instance
per request: tests/programs/http-proxy, built by `cargo test`) under wrk
and h2load, beside Ray's no-op deployment with one replica.

Then floods (ours alone, `--only-flood` for just these): two stateless
deployments of two tenants; the other tenant's p50 and p99 at one
connection (wrk on CPU 0), alone and while `wrk -c64` (on CPU 1) floods
the first: the goal is a p99 within 2x of the unloaded one, the flood
shed. Three shapes of flood: on a route with one place and no queue (what
the place serves, and 503s past it), on a route behind a token that the
flood does not send (401s only: the flood's refusals alone), and on a
route with 64 places (nothing refused: the flooding tenant's share of the
node's threads is all that stands between it and the other route).
A fourth: two places, no queue (the flood's excess refused, its work
wanting two threads at once). `--flood-shapes one,two,401,64` picks among
them (all four by default).

Then composition (`--only-composition` for just this): a front deployment
that answers each request with a handle call of a no-op deployment, one
replica each, on both systems, wrk at 1 and 16 connections.

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
h2c = true

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


OURS_COMPOSED_APP = OURS_APP + '''

@fabric.remote
class Front:
    def __init__(self):
        self.noop = fabric.get_deployment_handle("noop")

    def call(self, request):
        return fabric.get(self.noop.call.remote(request))
'''

OURS_COMPOSED_CONFIG = '''
[ingress]
listen = "127.0.0.1:{port}"

[[deployment]]
name = "noop"
component = "noop.py"
class = "Noop"
route = "/noop"
num_cpus = 0.5
max_queued_requests = 100000
public = true

[[deployment]]
name = "front"
component = "noop.py"
class = "Front"
route = "/"
num_cpus = 0.5
max_queued_requests = 100000
public = true
'''

RAY_COMPOSED_APP = '''
import sys, time
import ray
from ray import serve
from ray.serve.handle import DeploymentHandle

ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
serve.start(http_options={{"host": "127.0.0.1", "port": {port}}})

@serve.deployment(ray_actor_options={{"num_cpus": 0.5}})
class Noop:
    def __call__(self, request):
        return {{}}

@serve.deployment(ray_actor_options={{"num_cpus": 0.5}})
class Front:
    def __init__(self, noop: DeploymentHandle):
        self.noop = noop

    async def __call__(self, request):
        return await self.noop.remote(None)

serve.run(Front.bind(Noop.bind()), route_prefix="/")
print("ready", flush=True)
while True:
    time.sleep(3600)
'''

COMPOSED_CONNECTIONS = [1, 16]


def composed(fabric, python, port, duration, work):
    """{(system, connections): wrk figures} for a front deployment that
    answers each request with a handle call of a no-op deployment, one
    replica each (half a CPU each), on each system in turn."""
    with open(os.path.join(work, "noop.py"), "w") as f:
        f.write(OURS_COMPOSED_APP)
    config = os.path.join(work, "composed.toml")
    with open(config, "w") as f:
        f.write(OURS_COMPOSED_CONFIG.format(port=port))
    rows = {}
    proc = subprocess.Popen([fabric, "serve", config], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(proc, "serving on", 300)
        for c in COMPOSED_CONNECTIONS:
            rows[("ours", c)] = wrk(f"http://127.0.0.1:{port}/", c, duration)
    finally:
        stop(proc)
    app = os.path.join(work, "ray_composed.py")
    with open(app, "w") as f:
        f.write(RAY_COMPOSED_APP.format(port=port + 1))
    proc = subprocess.Popen([python, app], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(proc, "ready", 300)
        for c in COMPOSED_CONNECTIONS:
            rows[("ray", c)] = wrk(f"http://127.0.0.1:{port + 1}/", c, duration)
    finally:
        stop(proc)
    return rows


def report_composed(rows):
    print("\nComposition: a front deployment answering each request with a handle call of a "
          "no-op deployment (one replica each, half a CPU each; wrk -t1 on CPU 0)\n")
    print("| connections | Ray Serve req/s | ours req/s | ratio | Ray p50 / p99 ms | "
          "ours p50 / p99 ms | p99 ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for c in COMPOSED_CONNECTIONS:
        rr, r50, r99, _ = rows[("ray", c)]
        orate, o50, o99, _ = rows[("ours", c)]
        print(f"| {c} | {rr:,.0f} | {orate:,.0f} | {orate / rr:.1f}x | {r50:.2f} / {r99:.2f} | "
              f"{o50:.2f} / {o99:.2f} | {o99 / r99:.2f} |")


def wrk(url, connections, duration, script=None):
    """(requests/s, p50 ms, p99 ms, requests wrk gave up on) of one wrk run
    on CPU 0 (wrk gives up on a request after 2 s: such requests count in
    no rate and no percentile, so they are shown beside them); `script`, a
    wrk Lua script (a POST's body, say)."""
    base = ["taskset", "-c", "0", "wrk", "-t1", f"-c{connections}"]
    base += ["-s", script] if script else []
    subprocess.run(base + ["-d2s", url], capture_output=True, check=True)
    out = subprocess.run(base + [f"-d{duration}s", "--latency", url],
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


def h2load(url, connections, duration, streams=1, h1=False):
    """(requests/s, p50 ms, p99 ms, requests not answered 2xx) of one h2load
    run on CPU 0, after a 2 s warm-up run; percentiles from its log of
    every request."""
    base = ["taskset", "-c", "0", "h2load", "-t1", f"-c{connections}", f"-m{streams}"]
    if h1:
        base.append("--h1")
    subprocess.run(base + ["-D", "2", url], capture_output=True, check=True)
    with tempfile.NamedTemporaryFile("r", suffix=".log") as log:
        out = subprocess.run(base + ["-D", str(duration), "--log-file", log.name, url],
                             capture_output=True, text=True, check=True).stdout
        times = sorted(int(line.split("\t")[2]) / 1000.0
                       for line in log.read().splitlines() if line.strip())
    rate = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out).group(1))
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded", out)
    codes = re.search(r"status codes: (\d+) 2xx", out)
    lost = int(done.group(1)) - int(codes.group(1))
    if not times:
        sys.exit(f"h2load answered nothing from {url}:\n{out}")
    return rate, times[len(times) // 2], times[min(len(times) - 1, len(times) * 99 // 100)], lost


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


def load_rows(url, duration, h2, wrk_rows=True):
    """wrk rows by connections, and, with `h2`, h2load rows over HTTP/2
    (h2 = "h2") or HTTP/1.1 (h2 = "h1"): by connections, and `1x64` (one
    connection, 64 streams) over HTTP/2."""
    rows = {}
    if wrk_rows:
        rows.update({("wrk", c): wrk(url, c, duration) for c in CONNECTIONS})
    if h2:
        rows.update({(h2, c): h2load(url, c, duration, h1=h2 == "h1") for c in CONNECTIONS})
    if h2 == "h2":
        rows[(h2, "1x64")] = h2load(url, 1, duration, streams=64)
    return rows


def run_ours(fabric, replicas, port, duration, work, h2):
    with open(os.path.join(work, "noop.py"), "w") as f:
        f.write(OURS_APP)
    config = os.path.join(work, "serve.toml")
    with open(config, "w") as f:
        f.write(OURS_CONFIG.format(port=port, replicas=replicas))
    proc = subprocess.Popen([fabric, "serve", config], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(proc, "serving on", 300)
        return load_rows(f"http://127.0.0.1:{port}/", duration, h2)
    finally:
        stop(proc)


STATELESS_CONFIG = '''
[ingress]
listen = "127.0.0.1:{port}"
h2c = true

[[deployment]]
name = "hello"
component = "{wasm}"
route = "/"
max_ongoing_requests = 64
max_queued_requests = 100000
public = true
'''


FLOOD_CONFIG = '''
[ingress]
listen = "127.0.0.1:{port}"
max_connections_per_address = 128

[[deployment]]
name = "flooded"
tenant = "tenant-a"
component = "{wasm}"
route = "/a"
max_ongoing_requests = 1
max_queued_requests = 0
public = true

[[deployment]]
name = "victim"
tenant = "tenant-b"
component = "{wasm}"
route = "/b"
max_ongoing_requests = 8
public = true
'''


def behind_token(config):
    """FLOOD_CONFIG with the flooded route behind a token (the first
    `public = true` is the flooded deployment's)."""
    assert config.count("public = true") == 2, config
    return config.replace("public = true", 'token_file = "token"', 1)


def two_places(config):
    """FLOOD_CONFIG with 2 places on the flooded route, still no queue:
    the flood's excess refused, its work wanting two threads at once."""
    assert "max_ongoing_requests = 1\n" in config, config
    return config.replace("max_ongoing_requests = 1\n", "max_ongoing_requests = 2\n", 1)


def many_places(config):
    """FLOOD_CONFIG with 64 places on the flooded route: nothing refused,
    the flood served as fast as the node's share for its tenant allows."""
    assert "max_ongoing_requests = 1\n" in config, config
    return config.replace("max_ongoing_requests = 1\n", "max_ongoing_requests = 64\n", 1)


FLOODS = {
    "one place, no queue": lambda text: text,
    "two places, no queue": two_places,
    "every request refused (401)": behind_token,
    "64 places (all served)": many_places,
}


FLOOD_KEYS = dict(zip(("one", "two", "401", "64"), FLOODS))


def floods(fabric, wasm, port, duration, work, keys=tuple(FLOOD_KEYS)):
    """Each shape of flood in `FLOODS` that `keys` name (see `FLOOD_KEYS`):
    (shape, figures of `flood`)."""
    with open(os.path.join(work, "token"), "w") as f:
        f.write("a-token-the-flood-does-not-send")
    shapes = [FLOOD_KEYS[k] for k in keys]
    return [(shape, flood(fabric, wasm, port, duration, work, FLOODS[shape]))
            for shape in shapes]


def flood(fabric, wasm, port, duration, work, shaped=lambda text: text):
    """The victim's (rate, p50, p99, lost) alone and under the flood, and
    the flood's (requests/s, share answered other than 2xx)."""
    config = os.path.join(work, "flood.toml")
    with open(config, "w") as f:
        f.write(shaped(FLOOD_CONFIG.format(port=port, wasm=wasm)))
    proc = subprocess.Popen([fabric, "serve", config], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(proc, "serving on", 300)
        victim = f"http://127.0.0.1:{port}/b/x"
        alone = wrk(victim, 1, duration)
        flooder = subprocess.Popen(
            ["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{duration + 4}s",
             f"http://127.0.0.1:{port}/a/x"], stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        loaded = wrk(victim, 1, duration)
        out = flooder.communicate()[0]
        total = int(re.search(r"(\d+) requests in", out).group(1))
        shed = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
        return alone, loaded, (rate, int(shed.group(1)) / total if shed else 0.0)
    finally:
        stop(proc)


def report_floods(results):
    print("\nA flood on one tenant's stateless deployment (wrk -c64 on CPU 1) and another "
          "tenant's route (wrk -c1 on CPU 0)\n")
    print("| flood | victim alone: req/s, p50 / p99 ms | during the flood | p99 ratio "
          "(goal: at most 2) | the flood: req/s, refused |")
    print("|---|---:|---:|---:|---:|")
    for shape, (alone, loaded, (rate, shed)) in results:
        print(f"| {shape} | {alone[0]:,.0f}, {alone[1]:.2f} / {alone[2]:.2f} | "
              f"{loaded[0]:,.0f}, {loaded[1]:.2f} / {loaded[2]:.2f} | "
              f"{loaded[2] / alone[2]:.2f} | {rate:,.0f}, {shed:.0%} |")


def run_stateless(fabric, wasm, port, duration, work):
    config = os.path.join(work, "stateless.toml")
    with open(config, "w") as f:
        f.write(STATELESS_CONFIG.format(port=port, wasm=wasm))
    proc = subprocess.Popen([fabric, "serve", config], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(proc, "serving on", 300)
        return load_rows(f"http://127.0.0.1:{port}/", duration, "h2")
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


def run_ray(python, replicas, port, duration, work, h2):
    script = os.path.join(work, "ray_noop.py")
    with open(script, "w") as f:
        f.write(RAY_APP.format(port=port, replicas=replicas))
    proc = subprocess.Popen([python, script], stdout=subprocess.PIPE, text=True)
    try:
        wait_for(proc, "ready", 300)
        return load_rows(f"http://127.0.0.1:{port}/", duration, h2 and "h1")
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
    ap.add_argument("--no-h2", action="store_true", help="skip the h2load and stateless rows")
    ap.add_argument("--only-flood", action="store_true")
    ap.add_argument("--flood-shapes", default=",".join(FLOOD_KEYS),
                    help="which floods of --only-flood: one, two (places), 401, 64 (places)")
    ap.add_argument("--only-composition", action="store_true")
    ap.add_argument("--only-classifier", action="store_true",
                    help="the digits classifier (benches/serve_classifier.py)")
    ap.add_argument("--proxy-wasm",
                    default="target/guests/wasm32-wasip2/release/http_proxy.wasm")
    args = ap.parse_args()
    if args.only_cold_starts:
        with tempfile.TemporaryDirectory() as work:
            report_cold_starts(cold_starts(os.path.abspath(args.fabric), 18433, work,
                                           args.cold_starts))
        return
    fabric = os.path.abspath(args.fabric)
    wasm = os.path.abspath(args.proxy_wasm)
    shapes = args.flood_shapes.split(",")
    if unknown := [k for k in shapes if k not in FLOOD_KEYS]:
        ap.error(f"--flood-shapes: unknown {', '.join(unknown)} (known: {', '.join(FLOOD_KEYS)})")
    if args.only_flood:
        with tempfile.TemporaryDirectory() as work:
            report_floods(floods(fabric, wasm, 18435, args.duration, work, shapes))
        return
    python = os.path.join(args.ray_venv, "bin", "python")
    if args.only_composition:
        with tempfile.TemporaryDirectory() as work:
            report_composed(composed(fabric, python, 18436, args.duration, work))
        return
    import serve_classifier
    if args.only_classifier:
        serve_classifier.report(serve_classifier.classifier_rows(fabric, python, 18437,
                                                                 args.duration))
        return
    rows, h2_rows = [], []
    with tempfile.TemporaryDirectory() as work:
        for replicas in REPLICAS:
            h2 = replicas == 1 and not args.no_h2
            ours = run_ours(fabric, replicas, 18431, args.duration, work, h2 and "h2")
            ray = run_ray(python, replicas, 18432, args.duration, work, h2)
            for c in CONNECTIONS:
                rows.append((replicas, c, ray[("wrk", c)], ours[("wrk", c)]))
            if h2:
                for c in CONNECTIONS:
                    h2_rows.append((f"{c}", ray[("h1", c)], ours[("h2", c)]))
                h2_rows.append(("1x64", None, ours[("h2", "1x64")]))
                ray_noop = ray
        stateless = None
        if not args.no_h2 and os.path.exists(args.proxy_wasm):
            stateless = run_stateless(fabric, wasm, 18434, args.duration, work)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"\n{stamp} on {platform.machine()}, {os.cpu_count()} CPUs; load generator "
          f"(-t1) pinned to CPU 0, {args.duration} s per row; a no-op deployment returning {{}}\n")
    print("| replicas | connections | Ray Serve req/s | ours req/s | ratio | "
          "Ray p50 / p99 ms | ours p50 / p99 ms | p99 ratio | gave up (Ray / ours) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for replicas, c, (rr, r50, r99, rl), (orate, o50, o99, ol) in rows:
        print(f"| {replicas} | {c} | {rr:,.0f} | {orate:,.0f} | {orate / rr:.1f}x | "
              f"{r50:.2f} / {r99:.2f} | {o50:.2f} / {o99:.2f} | {o99 / r99:.2f} | {rl} / {ol} |")
    if h2_rows:
        print("\nh2load, one replica: Ray Serve over HTTP/1.1 (--h1), ours over HTTP/2 (h2c)\n")
        print_versus("connections", h2_rows)
    if stateless:
        print("\nA stateless wasi:http component (a fresh instance per request) beside Ray's "
              "no-op deployment with one replica (Ray over HTTP/1.1 in both tools)\n")
        versus = [(f"wrk {c}", ray_noop[("wrk", c)], stateless[("wrk", c)]) for c in CONNECTIONS]
        versus += [(f"h2load {c}", ray_noop[("h1", c)], stateless[("h2", c)])
                   for c in CONNECTIONS]
        versus.append(("h2load 1x64", None, stateless[("h2", "1x64")]))
        print_versus("load", versus)
    with tempfile.TemporaryDirectory() as work:
        if os.path.exists(wasm):
            report_floods(floods(fabric, wasm, 18435, args.duration, work))
        report_cold_starts(cold_starts(fabric, 18433, work, args.cold_starts))
        report_composed(composed(fabric, python, 18436, args.duration, work))
    serve_classifier.report(serve_classifier.classifier_rows(fabric, python, 18437,
                                                             args.duration))


def print_versus(what, rows):
    print(f"| {what} | Ray Serve req/s | ours req/s | ratio | Ray p50 / p99 ms | "
          "ours p50 / p99 ms | p99 ratio | not answered (Ray / ours) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, ray, (orate, o50, o99, ol) in rows:
        if ray is None:
            print(f"| {label} | - | {orate:,.0f} | - | - | {o50:.2f} / {o99:.2f} | - | - / {ol} |")
            continue
        rr, r50, r99, rl = ray
        print(f"| {label} | {rr:,.0f} | {orate:,.0f} | {orate / rr:.1f}x | {r50:.2f} / {r99:.2f} | "
              f"{o50:.2f} / {o99:.2f} | {o99 / r99:.2f} | {rl} / {ol} |")


def report_cold_starts(times):
    times.sort()
    print(f"\nScaled to zero, first request answered (ours, {len(times)} times): "
          f"p50 {statistics.median(times):.1f} ms, max {times[-1]:.1f} ms (goal: 50 ms)")


if __name__ == "__main__":
    main()
