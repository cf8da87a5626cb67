"""Coroutines in Python guests (tests/all/python.rs builds this once):

- a class with `async def` methods is a concurrent actor whose calls
  interleave: a call that awaits an `asyncio.Event` is woken by a later
  call, twenty naps take about one nap's time;
- `await ref` and `asyncio.gather` of references give the objects' values,
  a failed task's error is raised at the `await`, `asyncio.wait_for` on a
  reference times out while the actor goes on serving, and `SystemExit`
  in a call fails that call only;
- an `async def` remote function, an actor created with
  `max_concurrency=1` or without it (as another language's handle creates
  it), and `asyncio.run` in the driver run their coroutines to the end;
- killing an actor with a call in flight fails that call with
  `ActorDiedError`."""

import asyncio
import time

import fabric


@fabric.remote
def square(x):
    return x * x


@fabric.remote
def fails():
    raise ValueError("no luck")


@fabric.remote
def sleepy(seconds):
    time.sleep(seconds)
    return seconds


@fabric.remote
async def add_up(refs):
    values = await asyncio.gather(*refs)
    await asyncio.sleep(0.01)
    return sum(values)


@fabric.remote
class Latch:
    def __init__(self):
        self.event = asyncio.Event()
        self.log = []

    async def wait(self):
        self.log.append("waiting")
        await self.event.wait()
        self.log.append("woken")
        return "opened"

    def open(self):
        self.event.set()
        self.log.append("opened")
        return len(self.log)

    async def nap(self, seconds):
        await asyncio.sleep(seconds)
        return seconds

    async def total(self, refs):
        return sum(await asyncio.gather(*refs))

    async def first(self, refs):
        return await refs[0]

    async def deadline(self, refs, seconds):
        try:
            await asyncio.wait_for(refs[0], seconds)
            return "in time"
        except TimeoutError:
            return "timed out"

    async def leave(self):
        await asyncio.sleep(0)
        raise SystemExit(3)

    async def boom(self):
        await asyncio.sleep(0)
        raise KeyError("gone")

    def history(self):
        return self.log


def failure(ref):
    try:
        return f"no error: {fabric.get(ref, timeout=30)!r}"
    except fabric.FabricError as e:
        return f"{type(e).__name__} {getattr(e, 'kind', '')}".strip()


def interleaving():
    latch = Latch.remote()
    waiting = latch.wait.remote()
    print("latch:", fabric.get(latch.open.remote(), timeout=30), fabric.get(waiting, timeout=30))
    start = time.monotonic()
    naps = fabric.get([latch.nap.remote(0.3) for _ in range(20)], timeout=60)
    print("naps:", len(naps), "interleaved:", time.monotonic() - start < 3.0)
    print("history:", fabric.get(latch.history.remote()))
    return latch


def awaiting(latch):
    print("total:", fabric.get(latch.total.remote([square.remote(i) for i in range(5)])))
    print("failed await:", failure(latch.first.remote([fails.remote()])))
    print("deadline:", fabric.get(latch.deadline.remote([sleepy.remote(5)], 0.1), timeout=30),
          fabric.get(latch.deadline.remote([square.remote(3)], 30), timeout=30),
          fabric.get(latch.nap.remote(0), timeout=30))
    try:
        fabric.get(latch.boom.remote(), timeout=30)
    except fabric.TaskFailedError as e:
        print("boom:", e.kind, "KeyError" in str(e))
    print("exit:", failure(latch.leave.remote()), "then:", fabric.get(latch.nap.remote(0), timeout=30))


async def drive():
    a, b = await asyncio.gather(square.remote(6), square.remote(7))
    await asyncio.sleep(0.01)
    return a + b


def to_the_end():
    print("async task:", fabric.get(add_up.remote([square.remote(2), square.remote(3)]), timeout=30))
    one_at_a_time = Latch.options(max_concurrency=1).remote()
    print("max_concurrency=1:", fabric.get(one_at_a_time.nap.remote(0.01), timeout=30))
    # As another language's handle creates it: calls through `actor-call`.
    unset = Latch.options(max_concurrency=None).remote()
    print("max_concurrency unset:", fabric.get(unset.total.remote([square.remote(4)]), timeout=30))
    print("asyncio.run:", asyncio.run(drive()))


def killed():
    latch = Latch.remote()
    waiting = latch.wait.remote()
    fabric.get(latch.history.remote(), timeout=30)  # the wait has started
    fabric.kill(latch)
    print("killed:", failure(waiting))


@fabric.main
def main():
    latch = interleaving()
    awaiting(latch)
    to_the_end()
    killed()
