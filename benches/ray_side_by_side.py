#!/usr/bin/env python3
"""Ray's microbenchmark and ours, back to back on this machine.

Run it from the repository root (needs python3 with venv and pip, and the
package registry; takes about 15 minutes on 2 cores):

    python3 benches/ray_side_by_side.py [--keep-venv DIR] [--markdown OUT.md]
    python3 benches/ray_side_by_side.py --transfers [--keep-venv DIR]

It installs Ray 2.60 with numpy and grpcio into a throwaway virtualenv,
runs `ray microbenchmark` and a streaming-generator run of its own (items
per second, which Ray's suite lacks), then `cargo bench --bench microbenchmark --
--ray-only`, and prints, per metric of Ray's suite: Ray, ours, ratio.
Both sides report the mean and the standard deviation of their runs.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

RAY_VERSION = "2.60.0"

# Ray's suite, in the order of the table (benches/microbenchmark.rs's order).
SUITE = [
    "single_client_tasks_sync",
    "single_client_tasks_async",
    "multi_client_tasks_async",
    "1_1_actor_calls_sync",
    "1_1_actor_calls_async",
    "1_1_actor_calls_concurrent",
    "1_n_actor_calls_async",
    "n_n_actor_calls_async",
    "n_n_actor_calls_with_arg_async",
    "single_client_put_calls",
    "single_client_get_calls",
    "multi_client_put_calls",
    "single_client_put_gigabytes",
    "multi_client_put_gigabytes",
    "single_client_tasks_and_get_batch",
    "single_client_wait_1k_refs",
    "single_client_get_object_containing_10k_refs",
    "single_client_generator_items",
    "placement_group_create_removal",
    # Ray's Python workloads written as Python guests (benches/python.rs),
    # each against the Ray row of the same shape.
    "python_single_client_tasks_sync",
    "python_single_client_tasks_async",
    "python_1_1_actor_calls_sync",
    "python_1_1_actor_calls_async",
]


def ray_row(name):
    """Ray's row for our metric: a Python-guest row compares with the same
    Ray workload (Ray's suite is Python)."""
    return name.removeprefix("python_")

# Not in `ray microbenchmark`: items per second through a streaming
# generator (one task yielding 1000 small items, each taken and read as it
# comes), timed the way Ray's suite times (warm-up, then 5 runs of ~2 s).
RAY_GENERATOR = r"""
import time, ray
ray.init(logging_level="ERROR")

@ray.remote
def small_items(n):
    for _ in range(n):
        yield 0

def rep():
    for ref in small_items.remote(1000):
        ray.get(ref)

rep()
start = time.perf_counter(); rep(); per_rep = time.perf_counter() - start
reps = max(1, int(2.0 / per_rep))
rates = []
for _ in range(5):
    start = time.perf_counter()
    for _ in range(reps):
        rep()
    rates.append(reps * 1000 / (time.perf_counter() - start))
mean = sum(rates) / len(rates)
sd = (sum((r - mean) ** 2 for r in rates) / len(rates)) ** 0.5
print(f"single client generator items per second {mean} +- {sd}")
"""

# Ray prints e.g. "single client put calls (Plasma Store) per second 2160.5 +- 30.1".
RAY_LINE = re.compile(r"^(?P<name>.+?) per second (?P<mean>[\d.eE+-]+) \+- (?P<sd>[\d.eE+-]+)")


def canonical(ray_name):
    """'1:1 actor calls sync' -> '1_1_actor_calls_sync' (Ray's result keys)."""
    name = ray_name.replace("(Plasma Store)", "").strip()
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def run(cmd, **kw):
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=True, text=True, **kw)


def install_ray(venv):
    """Ray, numpy and grpcio in the virtualenv `venv` (made if missing);
    returns its python."""
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        run([sys.executable, "-m", "venv", venv])
        run([python, "-m", "pip", "install", "-q", f"ray=={RAY_VERSION}", "numpy", "grpcio"])
    return python


def ray_microbenchmark(ray, env):
    """`ray microbenchmark`'s output. Its first run in a new virtualenv
    has exited 1 here (seen twice, not reproduced by hand): its output's
    end is shown and it runs once more."""
    for attempt in (1, 2):
        print("+", ray, "microbenchmark", flush=True)
        done = subprocess.run([ray, "microbenchmark"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, env=env)
        if done.returncode == 0:
            return done.stdout
        print(f"ray microbenchmark exited {done.returncode} (try {attempt} of 2); its last lines:",
              *done.stdout.splitlines()[-15:], sep="\n", flush=True)
    sys.exit("ray microbenchmark failed twice")


def ray_figures(venv, ray_pattern=None):
    python = install_ray(venv)
    ray = os.path.join(venv, "bin", "ray")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    figures = {}
    # Ray's own filter: the metrics whose name contains the pattern; several
    # patterns (comma-separated) run Ray's suite once each.
    for pattern in ray_pattern.split(",") if ray_pattern else [None]:
        if pattern:
            env["TESTS_TO_RUN"] = pattern
        out = ray_microbenchmark(ray, env)
        for line in out.splitlines():
            m = RAY_LINE.match(line.strip())
            if m:
                figures[canonical(m["name"])] = (float(m["mean"]), float(m["sd"]))
    if not figures:
        sys.exit("no figures in Ray's output:\n" + out)
    out = "" if ray_pattern else run(
        [python, "-c", RAY_GENERATOR], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    ).stdout
    for line in out.splitlines():
        m = RAY_LINE.match(line.strip())
        if m:
            figures[canonical(m["name"])] = (float(m["mean"]), float(m["sd"]))
    return figures


# Ray's counterpart of `cargo bench --bench cluster`'s transfer rows: Ray's
# `object_store` release-test shape (an object broadcast to other nodes), on
# three Ray nodes of 2 CPUs on this one machine (ray.cluster_utils.Cluster:
# a raylet and an object store each), timed the same way: a new object put
# on the driver's node, then from submitting a task on the target node to
# its reply, the task waiting until the object is local; 4 objects per run,
# the first into a receiver that had none of that size, 3 runs.
RAY_TRANSFER = r"""
import statistics, time, ray, numpy as np
from ray.cluster_utils import Cluster

GiB = 1 << 30
c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "object_store_memory": 3 * GiB})
c.add_node(num_cpus=2, resources={"n1": 1}, object_store_memory=3 * GiB)
c.add_node(num_cpus=2, resources={"n2": 1}, object_store_memory=3 * GiB)
ray.init(address=c.address)
c.wait_for_nodes()

@ray.remote
def fetch_here(refs):
    ray.wait(refs, num_returns=len(refs), fetch_local=True)
    return ray.get_runtime_context().get_node_id()

def rounds(mib, targets, n):
    times = []
    for _ in range(n):
        ref = ray.put(np.ones(mib << 20, dtype=np.uint8))
        t = time.perf_counter()
        ray.get([fetch_here.options(resources={r: 0.01}).remote([ref]) for r in targets])
        times.append(time.perf_counter() - t)
        del ref
        time.sleep(0.2)
    return times

def row(name, xs):
    sd = statistics.pstdev(xs) if len(xs) > 1 else 0.0
    print(f"RAYROW {name} {statistics.mean(xs):.4f} {sd:.4f}", flush=True)

rounds(64, ["n1", "n2"], 1)
fresh, warm = [], []
for _ in range(3):
    t = rounds(1024, ["n2"], 4)
    fresh.append(GiB / t[0] / 1e9)
    warm += [GiB / x / 1e9 for x in t[1:]]
row("1gib_fresh_gbps", fresh)
row("1gib_warm_gbps", warm)
fresh, warm = [], []
for _ in range(3):
    t = rounds(100, ["n1", "n2"], 4)
    fresh.append(t[0] * 1e3)
    warm += [x * 1e3 for x in t[1:]]
row("100mib_2_fresh_ms", fresh)
row("100mib_2_warm_ms", warm)
ray.shutdown()
c.shutdown()
"""

# Our rows (benches/cluster.rs) for each of Ray's, local socket then TLS.
TRANSFER_ROWS = [
    ("1gib_warm_gbps", "1 GiB to another node, warm receiver, GB/s", "1 GiB to another node {}, warm receiver"),
    ("1gib_fresh_gbps", "1 GiB to another node, fresh receiver, GB/s", "1 GiB to another node {}, fresh receiver"),
    ("100mib_2_warm_ms", "100 MiB to 2 nodes, warm receivers, ms", "100 MiB to 2 nodes {}, warm receivers"),
    ("100mib_2_fresh_ms", "100 MiB to 2 nodes, fresh receivers, ms", "100 MiB to 2 nodes {}, fresh receivers"),
]


def transfers(venv):
    """Ray's transfers and ours (local socket, TLS), as table rows."""
    python = install_ray(venv)
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    out = run([python, "-c", RAY_TRANSFER], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env).stdout
    ray = {}
    for line in out.splitlines():
        if line.startswith("RAYROW "):
            _, name, mean, sd = line.split()
            ray[name] = (float(mean), float(sd))
    ours = run(["cargo", "bench", "--bench", "cluster"], stdout=subprocess.PIPE).stdout
    print(ours)

    def our_row(label):
        for line in ours.splitlines():
            if line.startswith(label):
                m = re.search(r"([0-9.]+) ± ([0-9.]+)\s*$", line)
                if m:
                    return float(m[1]), float(m[2])
        sys.exit(f"the cluster bench printed no row `{label}`")

    rows = [
        f"| metric | Ray {RAY_VERSION} | wasmfabric, local socket | wasmfabric, TLS | local / Ray |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, metric, label in TRANSFER_ROWS:
        rm, rsd = ray[key]
        lm, lsd = our_row(label.format("over its local socket"))
        tm, tsd = our_row(label.format("over TLS"))
        better = lm / rm if key.endswith("gbps") else rm / lm
        rows.append(
            f"| {metric} | {rm:.2f} ± {rsd:.2f} | {lm:.2f} ± {lsd:.2f} | {tm:.2f} ± {tsd:.2f} | {better:.1f}x |"
        )
    return rows


def our_figures(only):
    with tempfile.NamedTemporaryFile(suffix=".json") as f:
        subset = ["--only", ",".join(only)] if only else []
        run(["cargo", "bench", "--bench", "microbenchmark", "--", "--ray-only", *subset, "--json", f.name])
        data = json.load(open(f.name))
    return {k: (v["mean"], v["sd"], v["unit"]) for k, v in data.items()}


def fmt(x):
    return f"{x:,.0f}" if x >= 100 else f"{x:.2f}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--keep-venv", help="install Ray here and keep it (default: a temporary directory)")
    ap.add_argument("--markdown", help="also write the table to this file")
    ap.add_argument(
        "--transfers",
        action="store_true",
        help="instead of the microbenchmark: objects moved between 3 nodes on this machine "
        "(Ray's cluster_utils.Cluster against `cargo bench --bench cluster`)",
    )
    ap.add_argument(
        "--only",
        help="a subset: our metric names, comma-separated, e.g. the actor rows "
        "1_1_actor_calls_sync,1_1_actor_calls_async,1_1_actor_calls_concurrent,"
        "1_n_actor_calls_async,n_n_actor_calls_async,n_n_actor_calls_with_arg_async",
    )
    ap.add_argument(
        "--ray-pattern",
        help="with --only: Ray's TESTS_TO_RUN, a text every wanted Ray metric's name "
        "contains (e.g. 'actor calls'); several, comma-separated, run Ray's suite once each "
        "(e.g. 'single client tasks,1:1 actor calls' for the python_ rows)",
    )
    args = ap.parse_args()
    only = args.only.split(",") if args.only else None

    tmp = None
    venv = args.keep_venv
    if venv is None:
        tmp = tempfile.mkdtemp(prefix="ray-venv-")
        venv = tmp
    try:
        if args.transfers:
            emit(args.markdown, transfers(venv))
            return
        ray = ray_figures(venv, args.ray_pattern if only else None)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    ours = our_figures(only)

    header = f"| metric | Ray {RAY_VERSION} | wasmfabric | ratio |"
    rows = [header, "|---|---:|---:|---:|"]
    for name in only or SUITE:
        if name not in ours:
            sys.exit(f"our suite did not report {name}")
        mean, sd, unit = ours[name]
        if ray_row(name) not in ray:
            rows.append(f"| {name} | (not reported) | {fmt(mean)} ± {fmt(sd)} {unit} | |")
            continue
        rm, rsd = ray[ray_row(name)]
        ratio = mean / rm if rm else float("inf")
        rows.append(f"| {name} | {fmt(rm)} ± {fmt(rsd)} | {fmt(mean)} ± {fmt(sd)} {unit} | {ratio:.1f}x |")
    emit(args.markdown, rows)


def emit(markdown, rows):
    """Prints the table (and writes it to `markdown`, if named)."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"
    table = "\n".join(rows)
    print(f"\n{stamp} on {machine}\n\n{table}")
    if markdown:
        with open(markdown, "w") as f:
            f.write(f"{stamp} on {machine}\n\n{table}\n")


if __name__ == "__main__":
    main()
