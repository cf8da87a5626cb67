"""The exceptions fabric calls raise: one per kind of the Rust SDK's `Error`.

Every one is a `FabricError`. A task that raised gives `TaskFailedError`,
whose `kind` says how it failed (`"application-error"` for an exception the
function raised, `"trap"`, `"unknown-function"`, `"bad-value"`, `"system"`)
and whose `value`, for an application error, is the error as the callee
encoded it, decoded: from Python, a dict with the exception's `type` and
`message`; from Rust, the error type's fields.
"""


class FabricError(Exception):
    """Any failure of a fabric call."""


class TaskFailedError(FabricError):
    """A task or actor method failed."""

    def __init__(self, function, kind, message, retryable=False, value=None):
        super().__init__(f"task `{function}` {_WHAT.get(kind, 'failed')}: {message}")
        self.function = function
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.value = value


_WHAT = {
    "application-error": "returned an error",
    "panic": "panicked",
    "trap": "trapped",
    "unknown-function": "is not exported",
    "bad-value": "got a value it could not decode",
    "system": "was lost",
}


class ActorDiedError(FabricError):
    """The actor is dead (killed, crashed, or its constructor failed)."""


class ObjectLostError(FabricError):
    """The object is gone and cannot be rebuilt."""


class GetTimeoutError(FabricError, TimeoutError):
    """A `get` or `wait` ran out of time."""


class TaskCancelledError(FabricError):
    """The task was cancelled."""


class ResourcesInfeasibleError(FabricError):
    """No node could ever satisfy the requested resources."""


class LimitExceededError(FabricError):
    """A limit was hit: `name` says which, `value` its size."""

    def __init__(self, name, value, message):
        super().__init__(f"limit `{name}` ({value}) exceeded: {message}")
        self.name = name
        self.value = value
        self.message = message


class NotFoundError(FabricError):
    """An id or name that does not exist (or is not yours)."""


class InvalidArgumentError(FabricError):
    """A bad argument to a fabric call."""


class ValueEncodingError(FabricError):
    """A value could not be encoded or decoded in this instance."""
