"""How the Python SDK resolves actor methods and encodes values, where its
fast paths could get it wrong (tests/all/python.rs): a method is resolved
once, as Ray resolves an actor's methods, but an attribute set on the
object or a `__getattr__` is looked up on every call; an argument count is
checked on every call; values of every shape round-trip through a task."""

from dataclasses import dataclass

import fabric


@fabric.remote
def echo(value):
    return value


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


@fabric.main
def main():
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
