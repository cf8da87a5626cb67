"""Ray's microbenchmark shapes for Python guests (benches/python.rs): each
workload is timed here, inside the sandbox, and printed as
`<name> <ops> <seconds>`, as tests/programs/bench prints Rust's."""

import time

import fabric


@fabric.remote
def small_value():
    return b"ok"


@fabric.remote
class Actor:
    def small_value(self):
        return b"ok"


@fabric.remote
class Idle:
    def ping(self):
        return 1


def tasks_sync(reps):
    for _ in range(reps):
        fabric.get(small_value.remote())
    return reps


def tasks_async(reps):
    for _ in range(reps):
        fabric.get([small_value.remote() for _ in range(1000)])
    return reps * 1000


def actor_calls_sync(reps):
    a = Actor.remote()
    fabric.get(a.small_value.remote())
    start = time.perf_counter()
    for _ in range(reps):
        fabric.get(a.small_value.remote())
    return reps, time.perf_counter() - start


def actor_calls_async(reps):
    a = Actor.remote()
    fabric.get(a.small_value.remote())
    start = time.perf_counter()
    for _ in range(reps):
        fabric.get([a.small_value.remote() for _ in range(1000)])
    return reps * 1000, time.perf_counter() - start


def idle_actors(n, seconds):
    """Creates `n` actors and waits until each answered once; returns how
    long that took. They then idle for `seconds` while the host measures."""
    start = time.perf_counter()
    actors = [Idle.remote() for _ in range(n)]
    fabric.get([a.ping.remote() for a in actors])
    took = time.perf_counter() - start
    print("actors ready", flush=True)
    time.sleep(seconds)
    return n, took


WORKLOADS = {
    "python_single_client_tasks_sync": tasks_sync,
    "python_single_client_tasks_async": tasks_async,
    "python_1_1_actor_calls_sync": actor_calls_sync,
    "python_1_1_actor_calls_async": actor_calls_async,
}


@fabric.main
def main(args):
    name, reps = args[0], int(args[1])
    start = time.perf_counter()
    if name == "python_idle_actors":
        created, took = idle_actors(reps, float(args[2]))
        print(f"{name} {created} {took}")
        return
    done = WORKLOADS[name](reps)
    ops, secs = done if isinstance(done, tuple) else (done, time.perf_counter() - start)
    print(f"{name} {ops} {secs}")
