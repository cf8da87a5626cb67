"""An actor keeps state between calls. Prints what examples/counter prints.

    fabric run examples/python/counter.py
"""

import fabric


@fabric.remote
class Counter:
    def __init__(self):
        self.value = 0

    def increment(self):
        self.value += 1
        return self.value


@fabric.main
def main():
    counter = Counter.remote()
    for _ in range(5):
        print(fabric.get(counter.increment.remote()))
