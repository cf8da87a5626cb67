#!/usr/bin/env python3
"""The digits classifier on Serve and on Ray Serve 2.60, side by side
(issue 18's classifier row).

Run it from the repository root after `cargo build --release -p fabric-cli`
(needs `wrk` from Debian, the onnxruntime 1.22.1 wheel for python3 and a
virtualenv with `ray[serve]==2.60.0` and `onnxruntime==1.22.1`):

    python3 benches/serve_classifier.py --ray-venv DIR [--duration 10]

Both serve examples/digits/model.onnx (an MLP trained on scikit-learn's 8x8
digits) in ONNX Runtime 1.22.1 on one thread per replica: ours is the Rust
replica of examples/digits (the model run through wasi:nn), Ray's a
deployment calling `onnxruntime.InferenceSession.run` in Python. Each
request POSTs one image as JSON (`{"images": [[64 pixels]]}`) and gets its
digit back. 1 and 2 replicas of half a CPU each; `wrk -t1` pinned to CPU 0
at 1, 16 and 64 connections, `--duration` seconds each after a 2 s
warm-up. Prints a markdown table (`serve_side_by_side.py --only-classifier`
runs the same).
"""

import argparse
import json
import os
import subprocess
import tempfile
import time

from serve_side_by_side import CONNECTIONS, REPLICAS, stop, wait_for, wrk

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "..", "examples", "digits")

OURS_CONFIG = '''
[ingress]
listen = "127.0.0.1:{port}"

[[deployment]]
name = "digits"
component = "{digits}"
class = "Classifier"
route = "/"
replicas = {replicas}
num_cpus = 0.5
max_queued_requests = 100000
public = true
manifest = "{digits}/nn.toml"
'''

RAY_APP = '''
import time
import numpy as np
import onnxruntime
import ray
from ray import serve

ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
serve.start(http_options={{"host": "127.0.0.1", "port": {port}}})

@serve.deployment(num_replicas={replicas}, ray_actor_options={{"num_cpus": 0.5}})
class Classifier:
    def __init__(self):
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(
            {model!r}, options, providers=["CPUExecutionProvider"])

    async def __call__(self, request):
        images = np.asarray((await request.json())["images"], dtype=np.float32)
        labels = self.session.run(["label"], {{"X": images}})[0]
        return {{"digits": labels.tolist()}}

serve.run(Classifier.bind(), route_prefix="/")
print("ready", flush=True)
while True:
    time.sleep(3600)
'''


def post_script(work):
    """A wrk script that POSTs the first held-out digit (a 0)."""
    with open(os.path.join(DIGITS, "test.json")) as f:
        image = json.load(f)["images"][0]
    body = json.dumps({"images": [image]})
    path = os.path.join(work, "post.lua")
    with open(path, "w") as f:
        f.write('wrk.method = "POST"\n'
                'wrk.headers["Content-Type"] = "application/json"\n'
                f"wrk.body = {json.dumps(body)}\n")
    return path


def checked(port):
    """The classifier answers the posted digit correctly before it is timed."""
    import http.client
    with open(os.path.join(DIGITS, "test.json")) as f:
        test = json.load(f)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/", json.dumps({"images": [test["images"][0]]}),
                 {"Content-Type": "application/json"})
    answer = json.loads(conn.getresponse().read())
    assert answer["digits"] == [test["labels"][0]], answer


def ours(fabric, onnxruntime, replicas, port, duration, work):
    config = os.path.join(work, "digits.toml")
    with open(config, "w") as f:
        f.write(OURS_CONFIG.format(port=port, replicas=replicas,
                                   digits=os.path.abspath(DIGITS)))
    proc = subprocess.Popen([fabric, "serve", config, "--onnxruntime", onnxruntime],
                            stdout=subprocess.PIPE, text=True)
    try:
        return timed(proc, "serving on", port, duration, work)
    finally:
        stop(proc)


def timed(proc, ready, port, duration, work):
    """wrk rows by connections, once the server `proc` printed `ready` and
    answered the posted digit correctly."""
    wait_for(proc, ready, 600)
    checked(port)
    script = post_script(work)
    return {c: wrk(f"http://127.0.0.1:{port}/", c, duration, script) for c in CONNECTIONS}


def ray(python, replicas, port, duration, work):
    app = os.path.join(work, "ray_digits.py")
    with open(app, "w") as f:
        f.write(RAY_APP.format(port=port, replicas=replicas,
                               model=os.path.abspath(os.path.join(DIGITS, "model.onnx"))))
    proc = subprocess.Popen([python, app], stdout=subprocess.PIPE, text=True)
    try:
        return timed(proc, "ready", port, duration, work)
    finally:
        stop(proc)
        subprocess.run([os.path.join(os.path.dirname(python), "ray"), "stop", "--force"],
                       capture_output=True)
        time.sleep(10)


def wheel_library():
    import importlib.util
    return os.path.join(importlib.util.find_spec("onnxruntime").submodule_search_locations[0],
                        "capi")


def classifier_rows(fabric, python, port, duration):
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for replicas in REPLICAS:
            o = ours(fabric, wheel_library(), replicas, port, duration, work)
            r = ray(python, replicas, port + 1, duration, work)
            rows += [(replicas, c, r[c], o[c]) for c in CONNECTIONS]
    return rows


def report(rows):
    print("\nThe digits classifier (one image per request, ONNX Runtime 1.22.1 on one thread "
          "per replica, half a CPU each; wrk -t1 on CPU 0)\n")
    print("| replicas | connections | Ray Serve req/s | ours req/s | ratio | "
          "Ray p50 / p99 ms | ours p50 / p99 ms | p99 ratio | gave up (Ray / ours) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for replicas, c, (rr, r50, r99, rl), (orate, o50, o99, ol) in rows:
        print(f"| {replicas} | {c} | {rr:,.0f} | {orate:,.0f} | {orate / rr:.1f}x | "
              f"{r50:.2f} / {r99:.2f} | {o50:.2f} / {o99:.2f} | {o99 / r99:.2f} | {rl} / {ol} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ray-venv", required=True)
    ap.add_argument("--fabric", default="target/release/fabric")
    ap.add_argument("--duration", type=int, default=10)
    args = ap.parse_args()
    python = os.path.join(args.ray_venv, "bin", "python")
    report(classifier_rows(os.path.abspath(args.fabric), python, 18437, args.duration))


if __name__ == "__main__":
    main()
