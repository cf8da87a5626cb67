"""Streaming generators in Python (tests/all/python.rs): a generator
function or actor method streams its items (Ray's
`num_returns="streaming"`), each its own object; an exception ends the
stream after the items before it; closing the stream stops the generator;
and, in a job whose manifest names the Rust stream-pipeline component
`rust`, a Python driver takes a Rust generator's items."""

import fabric


@fabric.remote
def count(n):
    for i in range(n):
        yield i


@fabric.remote
def fails_after(n):
    for i in range(n):
        yield i
    raise ValueError(f"broke after {n}")


@fabric.remote
class Ticker:
    def __init__(self):
        self.stopped = False

    def endless(self):
        i = 0
        try:
            while True:
                yield i
                i += 1
        finally:
            # Reached only if the generator is stopped: once its caller
            # closes the stream, its next `yield-item` is refused.
            self.stopped = True

    def was_stopped(self):
        return self.stopped


@fabric.remote
class Source:
    def __init__(self):
        self.made = 0

    def items(self, n):
        for i in range(n):
            self.made += 1
            yield f"item {i}"

    def made_so_far(self):
        return self.made


@fabric.main
def main(args):
    print("count:", [fabric.get(r) for r in count.remote(5)])
    got = []
    try:
        for r in fails_after.remote(3):
            got.append(fabric.get(r))
    except fabric.TaskFailedError as e:
        print("fails_after:", got, e.kind, e.value["type"], e.value["message"])
    ticker = Ticker.remote()
    stream = ticker.endless.options(backpressure=2).remote()
    first = [fabric.get(next(stream)) for _ in range(3)]
    stream.close()
    print("endless, closed:", first, list(stream))
    # The actor takes one call at a time: this one runs once the generator
    # has stopped, and never if it goes on.
    try:
        print("endless stopped:", fabric.get(ticker.was_stopped.remote(), timeout=10))
    except fabric.GetTimeoutError:
        print("endless was not stopped")
    s = Source.remote()
    print("actor:", [fabric.get(r) for r in s.items.remote(3)], fabric.get(s.made_so_far.remote()))
    explicit = s.items.options(num_returns="streaming", backpressure=1).remote(2)
    print("explicit:", [fabric.get(r) for r in explicit])
    one = count.remote(1)
    print("next within 5 s:", fabric.get(one.next(timeout=5)), list(one))
    if args and args[0] == "rust":
        readings = fabric.function("rust", "readings", num_returns="streaming")
        print("rust readings:", [fabric.get(r)["celsius"] for r in readings.remote(2)])
