#!/usr/bin/env python3
"""Ray's microbenchmark and ours, back to back on this machine.

Run it from the repository root (needs python3 with venv and pip, and the
package registry; takes about 15 minutes on 2 cores):

    python3 benches/ray_side_by_side.py [--keep-venv DIR] [--markdown OUT.md]

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


def ray_figures(venv, ray_pattern=None):
    python = os.path.join(venv, "bin", "python")
    if not os.path.exists(python):
        run([sys.executable, "-m", "venv", venv])
        run([python, "-m", "pip", "install", "-q", f"ray=={RAY_VERSION}", "numpy", "grpcio"])
    ray = os.path.join(venv, "bin", "ray")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    figures = {}
    # Ray's own filter: the metrics whose name contains the pattern; several
    # patterns (comma-separated) run Ray's suite once each.
    for pattern in ray_pattern.split(",") if ray_pattern else [None]:
        if pattern:
            env["TESTS_TO_RUN"] = pattern
        out = run([ray, "microbenchmark"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env).stdout
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
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}"
    table = "\n".join(rows)
    print(f"\n{stamp} on {machine}\n\n{table}")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"{stamp} on {machine}\n\n{table}\n")


if __name__ == "__main__":
    main()
