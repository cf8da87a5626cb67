"""The tour of wasmfabric in one program, in Python: a task, an actor, the
object store and a parallel map. It prints what the Rust tour
(examples/hello) prints.

Run it:

    fabric run examples/python/hello.py
"""

import time

import fabric


@fabric.remote
def add(x, y):
    return x + y


@fabric.remote(num_cpus=1)
def square(i):
    time.sleep(1)
    return i * i


@fabric.remote
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self):
        self.value += 1
        return self.value


@fabric.main
def main():
    print(fabric.get(add.remote(1, 2)))
    counter = Counter.remote()
    for _ in range(5):
        print(fabric.get(counter.increment.remote()))
    data = fabric.put([1, 2, 3, 4, 5])
    print(fabric.get(data))
    refs = [square.remote(i) for i in range(10)]
    print(fabric.get(refs))
