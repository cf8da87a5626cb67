"""The Python SDK's behaviour where it could go wrong, one scenario per
first argument (tests/all/python.rs builds this once):

- `semantics`: actor methods are looked up as Python looks them up (an
  attribute set on the object, a method replaced or deleted on the class, a
  new `__class__`, `__getattr__`, callable objects), argument counts are
  checked on every call (a function's too), values of every shape
  round-trip, and each task (a fresh instance of one snapshot) draws its
  own random numbers;
- `generators [rust]`: a generator function or actor method streams (Ray's
  `num_returns="streaming"`), an exception ends the stream after the items
  before it, closing the stream stops the generator; with `rust`, in a job
  whose manifest names the Rust stream-pipeline component `rust`, the
  driver takes a Rust generator's items;
- `groups` (on a node with 4 CPUs): placement groups reserve their bundles
  together and run work in them, one that can never fit fails at once,
  removing one frees its CPUs; an `ActorPool` hands out calls in order or as
  they finish;
- `drops` (under a 16 MiB object-store quota): the references a driver
  drops give their objects back while it runs (put, passed to a task,
  nested in a task's result or a put object or an async actor's result, a
  stream dropped unclosed)."""

import os
import random
import time
import weakref
from dataclasses import dataclass

import fabric
from fabric.util import ActorPool


# semantics

@fabric.remote
def echo(value):
    return value


@fabric.remote
def draws():
    return random.random(), os.urandom(16)


@fabric.remote
class Shapeshifter:
    def __init__(self):
        self.calls = 0

    def greet(self):
        self.calls += 1
        return f"greet {self.calls}"

    def add(self, a, b=10):
        return a + b

    def replace_greet(self):
        # An attribute on the object shadows the class's method.
        self.greet = lambda: "replaced"
        return "ok"

    def swap_dict(self):
        self.__dict__ = {"calls": 100}
        return "swapped"

    def __getattr__(self, name):
        if name.startswith("dyn_"):
            self.calls += 1
            return lambda: f"{name} {self.calls}"
        raise AttributeError(name)


@dataclass
class Times:
    """A callable object that cannot be hashed (`__hash__` is None)."""

    k: int = 3

    def __call__(self, x):
        return x * self.k


class Closed:
    def state(self):
        return "closed"


@fabric.remote
class Door:
    times = Times()

    def state(self):
        return "open"

    def patch(self):
        type(self).state = lambda self: "patched"
        return "ok"

    def unpatch(self):
        del type(self).state
        return "ok"

    def close(self):
        self.__class__ = Closed
        return "ok"


def outcome(ref):
    try:
        return repr(fabric.get(ref))
    except fabric.TaskFailedError as e:
        return f"{type(e).__name__} {e.kind}"


VALUES = [
    None, True, False, 0, 1, 127, 128, 255, 256, -1, -32, -33, 2**63 - 1, -(2**63),
    0.5, "", "x", "é" * 40, b"", b"\x00", b"x" * 253, b"y" * 254, b"z" * 255, b"w" * 256,
    [], [1, [2, [3]]], {"a": 1, "b": [b"c"]}, bytearray(b"ba"),
]


def semantics(args):
    s = Shapeshifter.remote()
    print(outcome(s.greet.remote()), outcome(s.greet.remote()))
    print(outcome(s.add.remote(1)), outcome(s.add.remote(1, 2)))
    print("too many:", outcome(s.add.remote(1, 2, 3)))
    print("too few:", outcome(s.add.remote()))
    print(outcome(s.dyn_a.remote()), outcome(s.dyn_b.remote()), outcome(s.dyn_a.remote()))
    print(outcome(s.replace_greet.remote()), outcome(s.greet.remote()))
    print(outcome(s.swap_dict.remote()), outcome(s.greet.remote()))
    try:
        s._secret
    except AttributeError as e:
        print("private: AttributeError", e)
    print("missing:", outcome(s.nothing.remote()))
    d = Door.remote()
    print(outcome(d.state.remote()), outcome(d.times.remote(4)), outcome(d.state.remote()))
    print(outcome(d.patch.remote()), outcome(d.state.remote()))
    print(outcome(d.unpatch.remote()), outcome(d.state.remote()))
    print(outcome(d.close.remote()), outcome(d.state.remote()))
    back = fabric.get([echo.remote(v) for v in VALUES])
    expected = [bytes(v) if isinstance(v, bytearray) else v for v in VALUES]
    wrong = [(v, b) for v, b in zip(expected, back) if v != b or type(v) is not type(b)]
    print("round trips:", len(VALUES), "wrong:", wrong)
    print("put/get:", [fabric.get(fabric.put(v)) == v for v in (b"k", 5, None, "s")])
    print("function args:", outcome(echo.remote()), outcome(echo.remote(1, 2)))
    drawn = fabric.get([draws.remote() for _ in range(4)])
    print("distinct draws:", len({d[0] for d in drawn}), len({d[1] for d in drawn}))


# generators

@fabric.remote
def count(n):
    for i in range(n):
        yield i


@fabric.remote
def fails_after(n):
    for i in range(n):
        yield i
    raise ValueError(f"broke after {n}")


@fabric.remote(num_returns=2)
def pair():
    # A generator with `num_returns=N` gives N values, not a stream.
    yield "left"
    yield "right"


@fabric.remote
def slow_then_one():
    time.sleep(0.5)
    yield "late"


@fabric.remote
def times_out():
    yield 1
    raise fabric.GetTimeoutError("its own get timed out")


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


def generators(args):
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
    # A handle that does not know the actor's class (found by name, or
    # passed in a value) streams when told to, and says so when not.
    Source.options(name="source").remote()
    found = fabric.get_actor("source")
    explicit = found.items.options(num_returns="streaming", backpressure=1).remote(2)
    print("explicit:", [fabric.get(r) for r in explicit])
    try:
        fabric.get(found.items.remote(2))
    except fabric.TaskFailedError as e:
        print("not streamed:", e.kind, "num_returns=\"streaming\"" in e.message)
    print("num_returns=2:", fabric.get(list(pair.remote())))
    for bad in ("streaming", 0, "dynamic"):
        try:
            echo.options(num_returns=bad)
        except fabric.InvalidArgumentError:
            print(f"num_returns={bad!r}: InvalidArgumentError")
    one = count.remote(1)
    print("next within 5 s:", fabric.get(one.next(timeout=5)), list(one))
    late = slow_then_one.remote()
    try:
        late.next(timeout=0.05)
    except fabric.GetTimeoutError:
        print("timed out, then:", fabric.get(late.next()), list(late))
    taken = []
    stream = times_out.remote()
    while True:  # a caller that waits out timeouts still sees the end
        try:
            taken.append(fabric.get(stream.next(timeout=5)))
        except StopIteration:
            break
        except fabric.GetTimeoutError:
            continue
        except fabric.TaskFailedError as e:
            print("generator's own timeout:", taken, e.kind)
            break
    if args and args[0] == "rust":
        readings = fabric.function("rust", "readings", num_returns="streaming")
        print("rust readings:", [fabric.get(r)["celsius"] for r in readings.remote(2)])


# groups

@fabric.remote(num_cpus=1)
def where():
    return fabric.context().node_id


@fabric.remote(num_cpus=1)
class Worker:
    def square(self, x):
        return x * x

    def slow_echo(self, x):
        time.sleep(0.3 * x)
        return x


def free_cpus():
    return fabric.available_resources().get("CPU", 0)


def groups(args):
    before = free_cpus()
    pg = fabric.placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_PACK", name="pair")
    print("ready:", pg.wait(10), "bundles:", pg.bundle_count, pg.bundle_specs)
    print("reserved:", before - free_cpus())
    in_bundle = fabric.PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)
    node = fabric.get(where.options(scheduling_strategy=in_bundle).remote())
    print("ran in bundle 0 on this node:", node == fabric.context().node_id)
    table = fabric.placement_group_table(pg)
    print("table:", table["name"], table["strategy"], table["state"], table["bundles"])
    print("by name:", fabric.get_placement_group("pair") == pg)
    try:
        fabric.placement_group([{"CPU": 64}])
    except fabric.FabricError as e:
        print("too big:", type(e).__name__)
    for bad in (
        lambda: fabric.placement_group([{"CPU": 1}], strategy="DIAGONAL"),
        lambda: fabric.placement_group([{"CPU": float("nan")}]),
        lambda: fabric.placement_group([{"memory": float("inf")}]),
        lambda: fabric.PlacementGroupSchedulingStrategy(pg, True)._wit(),
    ):
        try:
            bad()
        except fabric.InvalidArgumentError:
            print("refused: InvalidArgumentError")
    fabric.remove_placement_group(pg)
    try:
        fabric.placement_group_table(pg)
    except fabric.NotFoundError:
        print("after remove: NotFoundError, CPUs back:", free_cpus() == before)
    try:
        fabric.get(where.options(scheduling_strategy=in_bundle).remote())
    except fabric.FabricError as e:
        print("into a removed group:", type(e).__name__)
    try:
        print("wait on a removed group:", pg.wait(1))
    except fabric.FabricError as e:
        print("wait on a removed group:", type(e).__name__)

    pool = ActorPool([Worker.remote(), Worker.remote()])
    print("map:", list(pool.map(lambda a, v: a.square.remote(v), range(6))))
    # Two actors: 4 (1.2 s) on one, 1 then 2 (0.3 s, then 0.6 s) on the
    # other, so they finish 1, 2, 4; `map` would give them in order.
    print("unordered:", list(pool.map_unordered(lambda a, v: a.slow_echo.remote(v), [4, 1, 2])))
    pool.submit(lambda a, v: a.square.remote(v), 7)
    pool.submit(lambda a, v: a.square.remote(v), 8)
    pool.submit(lambda a, v: a.square.remote(v), 9)
    print("queued:", pool.has_free(), [pool.get_next() for _ in range(3)], pool.has_next())
    idle = pool.pop_idle()
    print("popped:", idle is not None, pool.has_free())
    pool.push(idle)
    try:
        pool.push(idle)
    except ValueError:
        print("push twice: ValueError")

    def square_or_fail(a, v):
        if v == 2:
            raise ValueError("cannot submit 2")
        return a.square.remote(v)

    for v in (1, 2, 3):
        pool.submit(square_or_fail, v)
    results = []
    while pool.has_next():
        try:
            results.append(pool.get_next())
        except ValueError as e:
            results.append(str(e))
    print("a failed submission:", results, "actors still free:", pool.has_free())
    pool.submit(lambda a, v: a.square.remote(v), 100)
    print("earlier dropped:", sorted(pool.map_unordered(lambda a, v: a.square.remote(v), [5, 6])))
    named = Worker.options(name="w3").remote()
    pool.push(named)
    try:
        pool.push(fabric.get_actor("w3"))
    except ValueError:
        print("the same actor by another handle: ValueError")


# drops

@fabric.remote
def holds(refs):
    """The list of references it was given, returned (nested in the result)."""
    return refs


@fabric.remote
def big_items(n):
    for _ in range(n):
        yield b"x" * (1 << 20)


@fabric.remote
class Keeper:
    async def wrapped(self):
        return [fabric.put(b"x" * (1 << 20))]


class Thing:
    pass


def drops(args):
    """Makes objects of 1 MiB in turn, six ways, under a quota that holds a
    few of them: only references given back as they go keep the job under
    it. The application's own `weakref.finalize` still runs."""
    big = b"x" * (1 << 20)
    for _ in range(48):
        ref = fabric.put(big)  # the object's last reference goes when `ref` is rebound
    print("put:", len(fabric.get(ref)), type(ref._handle).__del__.__module__)
    for _ in range(48):
        n = len(fabric.get(echo.remote(fabric.put(big))))
    print("passed:", n)
    for _ in range(48):
        inner = fabric.get(holds.remote([fabric.put(big)]))
        n = len(fabric.get(inner[0]))
    print("nested:", n)
    for _ in range(48):
        clone = fabric.get(fabric.put([fabric.put(big)]))
    print("put inside a put:", len(fabric.get(clone[0])))
    for _ in range(24):
        items = big_items.remote(4)  # dropped, not closed, after its first item
        n = len(fabric.get(next(items)))
    print("stream dropped:", n)
    keeper = Keeper.remote()
    for _ in range(48):
        inner = fabric.get(keeper.wrapped.remote())
        n = len(fabric.get(inner[0]))
    print("nested by an async actor:", n)
    fired = []
    thing = Thing()
    weakref.finalize(thing, fired.append, "fired")
    del thing
    print("application finalizer:", fired)


SCENARIOS = {"semantics": semantics, "generators": generators, "groups": groups, "drops": drops}


@fabric.main
def main(args):
    SCENARIOS[args[0]](args[1:])
