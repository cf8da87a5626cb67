"""A Serve deployment's replica (tests/all/serve.rs): each request is a
dict (`method`, `path`, `query`, `headers`, `body`), and what `call`
returns is the response. The path's last part picks what it does."""

import asyncio
import os
import time

import fabric


@fabric.remote
class Echo:
    def __init__(self, config=None):
        self.greeting = (config or {}).get("greeting", "hello")
        self.me = os.urandom(4).hex()
        self.served = 0

    def reconfigure(self, config=None):
        self.greeting = (config or {}).get("greeting", "hello")

    def call(self, request):
        self.served += 1
        last = request["path"].rstrip("/").rsplit("/", 1)[-1]
        if last == "json":
            return {"greeting": self.greeting, "method": request["method"],
                    "query": request["query"], "body": len(request["body"]),
                    "agent": "user-agent" in request["headers"],
                    "token": "authorization" in request["headers"]}
        if last == "record":
            return {"status": 201, "headers": {"x-made-by": "echo"}, "body": b"made"}
        if last == "slow":
            time.sleep(3)
            return "slow done"
        if last == "many":
            return [None] * 200_000
        if last == "switch":
            return {"status": 101, "headers": {"upgrade": "h2c"}}
        if last == "boom":
            raise ValueError("the handler broke")
        if last == "crash":
            os.abort()
        if last == "who":
            return self.me
        if last == "nap":
            time.sleep(0.2)
            return self.me
        return f"{self.greeting} {request['path']}"


@fabric.remote
class Latch:
    """An async replica: `/wait` waits until a later request `/open`s it,
    which only a replica that interleaves its requests lets happen."""

    def __init__(self):
        self.opened = asyncio.Event()

    async def call(self, request):
        if request["path"].endswith("/open"):
            self.opened.set()
            return "opened"
        await self.opened.wait()
        return "went through"


@fabric.remote
class Batched:
    """A batching replica: `call` takes the batch's requests as one list
    and answers a list, one per request, in order; a batch holding a
    `/short` request answers one item too few."""

    def call(self, requests):
        answers = [f"{len(requests)} {r['path']}" for r in requests]
        if any(r["path"].endswith("/short") for r in requests):
            answers.pop()
        return answers


@fabric.remote
class Broken:
    """A replica whose constructor fails: a deployment of it never serves."""

    def __init__(self, config=None):
        raise RuntimeError("this replica cannot start")

    def call(self, request):
        return "unreachable"
