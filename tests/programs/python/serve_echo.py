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
        if last == "node":
            return str(fabric.context().node_id)
        if last == "nap":
            time.sleep(0.2)
            return self.me
        return f"{self.greeting} {request['path']}"

    def count(self, n):
        """A generator: streamed to a handle's caller item by item."""
        for i in range(n):
            yield f"{self.greeting} {i}"


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


@fabric.remote
class Front:
    """Composes deployments through their handles: `/front/NAME/rest`
    calls deployment NAME's replica with the request's path set to `/rest`
    and wraps its answer; a handle's refusal is answered as a status."""

    def __init__(self):
        # A handle taken in the constructor, as Ray Serve passes them: the
        # deployments listed before this one in the file are found.
        try:
            self.kept = {"echo": fabric.get_deployment_handle("echo")}
        except fabric.errors.NotFoundError:
            self.kept = {}

    def call(self, request):
        parts = request["path"].strip("/").split("/")
        if parts[1] == "-kept":
            # The handle the constructor took: it outlives redeploys.
            handle = self.kept[parts[2]]
            inner = dict(request, path="/" + "/".join(parts[3:]))
            return {"via": "front", "answer": fabric.get(handle.call.remote(inner))}
        if parts[1] == "-node":
            return str(fabric.context().node_id)
        if parts[1] == "-claim":
            # No actor may take a name in the deployments' namespace.
            try:
                Echo.options(name="echo", namespace="serve").remote()
                return "claimed"
            except fabric.errors.InvalidArgumentError as e:
                return {"status": 409, "body": str(e).encode()}
        if parts[1] == "-stream":
            # A generator of another deployment, streamed through its handle.
            handle = fabric.get_deployment_handle(parts[2])
            items = handle.count.options(num_returns="streaming").remote(3)
            return {"streamed": [fabric.get(r) for r in items]}
        inner = dict(request, path="/" + "/".join(parts[2:]))
        try:
            handle = fabric.get_deployment_handle(parts[1])
            return {"via": "front", "answer": fabric.get(handle.call.remote(inner))}
        except fabric.errors.NotFoundError as e:
            return {"status": 404, "body": str(e).encode()}
        except fabric.errors.LimitExceededError as e:
            return {"status": 503, "body": str(e).encode()}
        except (fabric.errors.ActorDiedError, fabric.errors.TaskFailedError) as e:
            return {"status": 502, "body": type(e).__name__.encode()}
