"""A/B of the stateless request path between two `fabric` builds.

    python3 benches/serve_path_ab.py OLD NEW ROUNDS

One tenant, a no-op `wasi:http` deployment (tests/programs/http-proxy,
built by `cargo test`), `wrk -t1` pinned to CPU 0, 2 s of warm-up then
5 s at 1 and at 16 connections, ROUNDS interleaved rounds of each build
(a fresh `fabric serve` each); prints medians and ranges."""
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import serve_side_by_side as s  # noqa: E402

if len(sys.argv) != 4 or not sys.argv[3].isdigit():
    sys.exit("usage: python3 benches/serve_path_ab.py OLD_FABRIC NEW_FABRIC ROUNDS")
builds = [os.path.abspath(b) for b in sys.argv[1:3]]
rounds = int(sys.argv[3])
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
wasm = os.path.join(root, "target/guests/wasm32-wasip2/release/http_proxy.wasm")
if not os.path.exists(wasm):
    sys.exit(f"{wasm} is missing: `cargo test` builds it")
CONFIG = '''
[ingress]
listen = "127.0.0.1:{port}"

[[deployment]]
name = "noop"
tenant = "tenant-b"
component = "{wasm}"
route = "/b"
max_ongoing_requests = 64
public = true
'''
# Keyed by position, so a build A/B'd against itself keeps two columns.
res = {(i, c): [] for i in range(2) for c in (1, 16)}
with tempfile.TemporaryDirectory() as work:
    cfg = os.path.join(work, "c.toml")
    for r in range(rounds):
        for i, b in enumerate(builds):
            with open(cfg, "w") as f:
                f.write(CONFIG.format(port=18440, wasm=wasm))
            p = subprocess.Popen([b, "serve", cfg], stdout=subprocess.PIPE, text=True)
            try:
                s.wait_for(p, "serving on", 300)
                for c in (1, 16):
                    s.wrk("http://127.0.0.1:18440/b/x", c, 2)
                    res[(i, c)].append(s.wrk("http://127.0.0.1:18440/b/x", c, 5)[0])
            finally:
                s.stop(p)
            print(r, b, [res[(i, c)][-1] for c in (1, 16)], flush=True)
for c in (1, 16):
    for i, b in enumerate(builds):
        v = res[(i, c)]
        print(f"c={c} {b}: median {statistics.median(v):,.0f} ({min(v):,.0f}-{max(v):,.0f})")
