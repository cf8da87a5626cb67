"""An `async def` driver in a program that never imports asyncio: the SDK
installs its event loop at build time, so `await` of references works in
an instance that can import nothing (tests/all/python.rs)."""

import fabric


@fabric.remote
def square(x):
    return x * x


@fabric.remote
async def squares(refs):
    return [await r for r in refs]


@fabric.main
async def main():
    one = await square.remote(3)
    print(one, fabric.get(squares.remote([square.remote(1), square.remote(2)])))
