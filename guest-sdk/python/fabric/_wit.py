"""Between the WIT `error` variant and the SDK's exceptions."""

import traceback

from wit_world.imports import types

from . import errors

_KINDS = {
    types.FailureKind.APPLICATION_ERROR: "application-error",
    types.FailureKind.PANIC: "panic",
    types.FailureKind.TRAP: "trap",
    types.FailureKind.UNKNOWN_FUNCTION: "unknown-function",
    types.FailureKind.BAD_VALUE: "bad-value",
    types.FailureKind.SYSTEM: "system",
}
_WIT_KINDS = {name: kind for kind, name in _KINDS.items()}

#: The most of a traceback a failure carries.
MAX_MESSAGE = 8 << 10


def exception(e):
    """The exception for a WIT `error`."""
    if isinstance(e, types.Error_TaskFailed):
        f = e.value
        value = None
        if f.value is not None:
            from . import _msgpack

            try:
                value = _msgpack.unpack(f.value)
            except Exception:
                value = f.value
        err = errors.TaskFailedError(
            f.function, _KINDS.get(f.kind, "system"), f.message, f.retryable, value
        )
        err._raw = f.value
        return err
    if isinstance(e, types.Error_ActorDied):
        return errors.ActorDiedError(e.value)
    if isinstance(e, types.Error_ObjectLost):
        return errors.ObjectLostError(e.value)
    if isinstance(e, types.Error_Timeout):
        return errors.GetTimeoutError("timed out")
    if isinstance(e, types.Error_Cancelled):
        return errors.TaskCancelledError("cancelled")
    if isinstance(e, types.Error_ResourcesInfeasible):
        return errors.ResourcesInfeasibleError(e.value)
    if isinstance(e, types.Error_LimitExceeded):
        return errors.LimitExceededError(e.value.name, e.value.value, e.value.message)
    if isinstance(e, types.Error_NotFound):
        return errors.NotFoundError(e.value)
    if isinstance(e, types.Error_InvalidArgument):
        return errors.InvalidArgumentError(e.value)
    return errors.FabricError(repr(e))


def raise_error(e):
    raise exception(e) from None


def failure(function, kind, message, value=None, retryable=False):
    """A WIT `task-failed` error."""
    return types.Error_TaskFailed(
        types.TaskFailure(
            function=function,
            kind=_WIT_KINDS.get(kind, types.FailureKind.APPLICATION_ERROR),
            message=message[:MAX_MESSAGE],
            retryable=bool(retryable),
            value=value,
        )
    )


def to_wit(function, exc):
    """The WIT error for an exception raised by `function`: a fabric error
    as itself (a `get` of a failed task, say), anything else as an
    application error with its traceback and, encoded, its type and text."""
    if isinstance(exc, errors.TaskFailedError):
        raw = getattr(exc, "_raw", None)
        if raw is None and exc.value is not None:
            from . import _msgpack

            try:
                raw = _msgpack.pack(exc.value)
            except Exception:
                raw = None
        return failure(exc.function, exc.kind, exc.message, raw, exc.retryable)
    simple = {
        errors.ActorDiedError: types.Error_ActorDied,
        errors.ObjectLostError: types.Error_ObjectLost,
        errors.ResourcesInfeasibleError: types.Error_ResourcesInfeasible,
        errors.NotFoundError: types.Error_NotFound,
        errors.InvalidArgumentError: types.Error_InvalidArgument,
    }
    for cls, variant in simple.items():
        if isinstance(exc, cls):
            return variant(str(exc))
    if isinstance(exc, errors.GetTimeoutError):
        return types.Error_Timeout()
    if isinstance(exc, errors.TaskCancelledError):
        return types.Error_Cancelled()
    if isinstance(exc, errors.LimitExceededError):
        return types.Error_LimitExceeded(types.Limit(name=exc.name, value=exc.value, message=exc.message))
    from . import _msgpack

    name = type(exc).__name__
    text = f"{name}: {exc}"
    if isinstance(exc, ModuleNotFoundError):
        text += (" (a Python component holds only the modules imported while it was built:"
                 " import it at the top of the application)")
    try:
        trace = "".join(traceback.format_exception(exc))
        message = text + "\n" + trace[-(MAX_MESSAGE - len(text) - 1) :]
    except RecursionError:
        message = text
    value = _msgpack.pack({"type": name, "message": str(exc)[:4096]})
    return failure(function, "application-error", message, value)
