"""A Serve deployment (README, "Serving over HTTP"): `fabric serve
examples/serve/serve.toml`, then `curl 127.0.0.1:8000/echo/json`."""

import fabric


@fabric.remote
class Echo:
    def __init__(self, config=None):  # user_config, when given
        self.greeting = (config or {}).get("greeting", "hello")

    def call(self, request):  # method, path, query, headers, body
        if request["path"].endswith("/json"):
            return {"greeting": self.greeting, "bytes": len(request["body"])}  # sent as JSON
        return f"{self.greeting} {request['path']}"  # sent as text
