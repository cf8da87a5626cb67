"""The object store: put a list once, pass it to a task by reference.
Prints what examples/put-get prints.

    fabric run examples/python/put_get.py
"""

import fabric


@fabric.remote
def total(values):
    return sum(values)


@fabric.main
def main():
    data = fabric.put([1, 2, 3, 4, 5])
    print(fabric.get(data))
    # The reference goes in on its own: the task gets the list itself.
    print(f"sum = {fabric.get(total.remote(data))}")
