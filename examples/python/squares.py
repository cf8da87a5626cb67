"""A parallel map: ten one-second tasks run as wide as the node's CPUs.
Prints what examples/squares prints.

    fabric run examples/python/squares.py
"""

import sys
import time

import fabric


@fabric.remote(num_cpus=1)
def square(i):
    time.sleep(1)
    return i * i


@fabric.main
def main():
    start = time.monotonic()
    refs = [square.remote(i) for i in range(10)]
    print(fabric.get(refs))
    print(f"took {time.monotonic() - start:.1f} s", file=sys.stderr)
