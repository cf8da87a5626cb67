"""Generators on concurrent actors, and async generators anywhere
(tests/all/python.rs): an async generator method streams while the
actor's other calls go on, even while it waits for its caller to take
items; plain generator methods stream from concurrent actors too."""

import asyncio
import time

import fabric


@fabric.remote
async def countdown(n):
    """An async generator task: its items, each awaited."""
    for i in range(n, 0, -1):
        await asyncio.sleep(0.001)
        yield i


@fabric.remote(num_returns=2)
async def pair():
    """An async generator declared with two returns: two objects."""
    yield "left"
    await asyncio.sleep(0)
    yield "right"


@fabric.remote
class Feed:
    def __init__(self):
        self.made = 0
        self.ended = 0

    async def ticks(self, n, pause):
        """`n` numbers, `pause` seconds apart: an async generator method."""
        try:
            for i in range(n):
                await asyncio.sleep(pause)
                self.made += 1
                yield i
        finally:
            self.ended += 1

    def squares(self, n):
        """A plain generator method of a concurrent actor."""
        for i in range(n):
            yield i * i

    async def broken(self):
        yield "one"
        raise ValueError("after one item")

    async def made_so_far(self):
        return self.made

    async def ended_so_far(self):
        return self.ended

    async def total_of(self, other, n):
        """Takes another actor's stream with `async for`."""
        total = 0
        # A handle that came in a value does not know its class: say that
        # the method streams.
        async for ref in other.ticks.options(num_returns="streaming").remote(n, 0.001):
            total += await ref
        return total


@fabric.remote(max_concurrency=2)
class Counter:
    def count(self, n):
        """A generator method of an actor that takes calls one at a time
        through its concurrent loop (`max_concurrency` without coroutines)."""
        yield from range(n)


def values(gen):
    return [fabric.get(r) for r in gen]


@fabric.main
def main():
    print("async generator task:", values(countdown.remote(4)), fabric.get(list(pair.remote())))

    feed = Feed.remote()
    # Two items ahead of the caller at most: after one is taken, the
    # generator waits for room, and the actor still answers other calls.
    stream = feed.ticks.options(backpressure=2).remote(10, 0.001)
    first = fabric.get(next(stream))
    time.sleep(0.3)
    made = fabric.get(feed.made_so_far.remote(), timeout=10)
    print("first:", first, "made while waiting for room:", made)
    print("the rest:", values(stream))

    # Two streams of one actor interleave: 2 x 10 items 20 ms apart take
    # about 0.2 s, not 0.4 s.
    started = time.monotonic()
    a = feed.ticks.remote(10, 0.02)
    b = feed.ticks.remote(10, 0.02)
    both = values(a) + values(b)
    took = time.monotonic() - started
    print("two streams:", len(both), "interleaved:", took < 0.35)

    print("plain generator method:", values(feed.squares.remote(5)))

    broken = feed.broken.remote()
    print("broken, first item:", fabric.get(next(broken)))
    try:
        next(broken)
        print("broken: no error")
    except fabric.TaskFailedError as e:
        print("broken then:", e.kind, "after one item" in str(e))

    # A dropped stream stops its generator, even one waiting for room
    # (which, not stopped, would wait for ever).
    ended = fabric.get(feed.ended_so_far.remote())
    dropped = feed.ticks.options(backpressure=1).remote(1000, 0.001)
    fabric.get(next(dropped))
    time.sleep(0.1)
    dropped.close()
    time.sleep(0.2)
    print("stopped when dropped:", fabric.get(feed.ended_so_far.remote()) - ended)

    other = Feed.remote()
    print("async for over a stream:", fabric.get(feed.total_of.remote(other, 6)))
    print("one call at a time:", values(Counter.remote().count.remote(4)))
