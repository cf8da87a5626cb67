"""The `guest` export: how the host runs this component's functions,
actors and driver."""

import sys
import traceback
from types import AsyncGeneratorType, CodeType, CoroutineType, FunctionType, GeneratorType

from wit_world import exports
from wit_world.exports import guest
from wit_world.imports import host, types
from componentize_py_types import Err, Ok

from . import errors, _msgpack
from ._api import FUNCTIONS, CLASSES, MAIN, has_coroutines
from ._values import encode, decode
from ._wit import failure, to_wit

#: This instance's actor: (class name, the object).
_ACTOR = []
#: The actor's methods resolved so far: name -> (what, bound method,
#: arity, the object, its class, the class's function).
_METHODS = {}


def _remember(method, found, obj):
    """Keeps the resolution of `method` when it is a plain function of the
    object's class, got the ordinary way. Anything else (a `__getattr__` or
    `__getattribute__`, a descriptor, a callable object) is looked up on
    every call, which also bounds `_METHODS` by the class's functions."""
    try:
        cls = type(obj)
        func = getattr(cls, method, None)
        if (
            isinstance(func, FunctionType)
            and cls.__getattribute__ is object.__getattribute__
            and type(getattr(obj, "__dict__", None)) is dict
            and method not in obj.__dict__
        ):
            _METHODS[method] = found + (obj, cls, func)
    except Exception:
        pass


def _still(method, obj, cls, func):
    """Whether a kept resolution still holds: the object's class is the
    same, nothing on the object shadows the method, and the class's
    function was not replaced or deleted."""
    try:
        return type(obj) is cls and method not in obj.__dict__ and getattr(cls, method, None) is func
    except Exception:
        return False


def _flush():
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        pass


#: The arity of each remote function of this component, by name (computed
#: on its first call, not on every one).
_FUNCTION_ARITIES = {}


def _arity(fn, skip_self):
    """The fewest and most positional arguments `fn` takes (None: any):
    (0, None) for a callable that is not a plain function."""
    try:
        code = getattr(fn, "__code__", None)
        if type(code) is not CodeType:
            return 0, None
        most = code.co_argcount - (1 if skip_self else 0)
        fewest = most - len(fn.__defaults__ or ())
    except Exception:
        return 0, None
    if code.co_flags & 0x04:  # *args
        most = None
    return fewest, most


def _decode_args(what, arity, args):
    fewest, most = arity
    if not args and not fewest:
        return args
    if len(args) < fewest or (most is not None and len(args) > most):
        expected = str(fewest) if fewest == most else f"{fewest} to {'any' if most is None else most}"
        raise Err(failure(what, "bad-value", f"expected {expected} arguments, got {len(args)}"))
    out = []
    for i, a in enumerate(args):
        try:
            out.append(decode(a))
        except errors.FabricError as e:
            raise Err(to_wit(what, e))
        except Exception as e:
            raise Err(failure(what, "bad-value", f"argument {i}: {e}"))
    return out


#: What a streaming generator returns once its items are handed over.
_NIL = b"\xc0"


def _drain(what, items, call=None):
    """Hands each item of the generator `items` to the caller
    (`yield-item`, or `yield-call-item` for call `call` of a concurrent
    actor, waiting for room there too): the call streams. The generator's
    own exception fails the call after the items before it; so does a
    refusal by the host (`cancelled` once the caller dropped the stream;
    `invalid-argument` when the caller did not ask for a stream, which gets
    a hint)."""
    first = True
    try:
        for item in items:
            data, nested = _item(what, item)
            try:
                if call is None:
                    host.yield_item(data, nested)
                else:
                    host.yield_call_item(call, data, nested, True)
            except Err as refused:
                raise _refusal(what, refused, first)
            first = False
    except Err:
        _close(items)
        raise
    except BaseException as exc:  # SystemExit too: the call fails, not the instance
        raise Err(_generator_error(what, exc))
    finally:
        _flush()
    return guest.Output_Value(_NIL)


def _items(what, items):
    """The items of a generator declared `num_returns=N`: its own
    exception fails the call as the application's error."""
    try:
        return list(items)
    except BaseException as exc:  # SystemExit too: the call fails, not the instance
        raise Err(_generator_error(what, exc))
    finally:
        _flush()


def _item(what, item):
    """A yielded item, encoded: (bytes, the references inside)."""
    try:
        e = encode(item)
    except Exception as exc:
        raise Err(failure(what, "bad-value", f"item: {exc}"))
    return e.data, e.nested


def _refusal(what, refused, first):
    """The host's refusal of an item, with a hint where the caller did not
    ask for a stream."""
    if first and isinstance(refused.value, types.Error_InvalidArgument):
        return Err(failure(what, "bad-value", _NOT_STREAMED.format(what=what)))
    return refused


def _generator_error(what, exc):
    err = to_wit(what, exc)
    if isinstance(err, types.Error_Timeout):
        # A caller's `next(timeout=...)` times out with the same error: the
        # generator's own timeout must end the stream instead.
        err = failure(what, "application-error", f"GetTimeoutError: {exc}")
    return err


async def _stream(what, call, items, room):
    """Hands each item of the async generator `items` to the caller of
    concurrent call `call`. Where the caller has not taken enough, it
    awaits `room(call)` (the actor's other calls run meanwhile) and yields
    the item again. Errors as in `_drain`."""
    first = True
    try:
        async for item in items:
            data, nested = _item(what, item)
            while True:
                try:
                    sent = host.yield_call_item(call, data, nested, False)
                except Err as refused:
                    raise _refusal(what, refused, first)
                if sent:
                    break
                await room(call)
            first = False
    except Err:
        await _aclose(items)
        raise
    except BaseException as exc:  # SystemExit too: the call fails, not the instance
        raise Err(_generator_error(what, exc))
    finally:
        _flush()


async def _aclose(items):
    try:
        await items.aclose()
    except BaseException:
        pass


_NOT_STREAMED = (
    "`{what}` is a generator but was not called as one: call it with "
    "num_returns=\"streaming\" (for an actor handle that does not know its class, "
    "handle.method.options(num_returns=\"streaming\").remote())"
)


def _close(items):
    """Stops a generator whose items are refused; its own cleanup failing
    must not take the instance down."""
    try:
        items.close()
    except BaseException:
        pass


def _output(what, value, returns, call=None):
    # A generator streams, unless the function declared `num_returns=N`
    # (its N values are then the generator's items, as before streaming).
    if type(value) is GeneratorType and returns == 1:
        return _drain(what, value, call)
    if type(value) is AsyncGeneratorType:
        # Outside a concurrent actor's loop: each item awaited to its end.
        from . import _aio

        value = _aio.sync_items(value)
        if returns == 1:
            return _drain(what, value, call)
    if type(value) is GeneratorType:
        value = _items(what, value)
    try:
        if returns == 1:
            e = encode(value)
            if not e.nested:
                return guest.Output_Value(e.data)
            nested = [h.clone() for h in e.nested]
            return guest.Output_Parts(guest.OutputParts(value=e.data, nested=nested, ends=[], nested_ends=[]))
        values = list(value)
        if len(values) != returns:
            raise ValueError(f"returned {len(values)} values, not num_returns={returns}")
        data, nested, ends, nested_ends = bytearray(), [], [], []
        for v in values:
            e = encode(v)
            data += e.data
            nested.extend(h.clone() for h in e.nested)
            ends.append(len(data))
            nested_ends.append(len(nested))
        parts = guest.OutputParts(value=bytes(data), nested=nested, ends=ends, nested_ends=nested_ends)
        return guest.Output_Parts(parts)
    except Exception as e:
        raise Err(failure(what, "bad-value", f"result: {e}"))


def _run(what, fn, args):
    try:
        value = fn(*args)
        if type(value) is CoroutineType:  # an `async def`, run to its end
            from . import _aio

            value = _aio.run_blocking(value)
        return value
    except BaseException as e:  # SystemExit too: the call fails, not the instance
        raise Err(to_wit(what, e))
    finally:
        _flush()


def _call(what, fn, args):
    """Starts a concurrent actor's call: the method's result, or the
    coroutine of an `async def` (which its loop runs)."""
    try:
        return fn(*args)
    except BaseException as e:  # SystemExit too: the call fails, not the instance
        raise Err(to_wit(what, e))
    finally:
        _flush()


#: Values `warm` encodes and decodes: the shapes calls carry most.
_WARM_VALUES = (b"ok", b"x" * 300, 1, 300, -5, 1.5, "text", None, True, [1, "a"], {"k": 1}, (1, 2))
#: Rounds enough for CPython to specialize what they run (3.14 does so
#: after a couple of executions of an instruction).
_WARM_ROUNDS = 16


def warm():
    """Runs the parts of a call that need no host once the application is
    imported, at build time: each instance starts from the snapshot taken
    after this, so what it computes and caches (each remote function's
    arity, CPython's specialized bytecode for encoding and decoding common
    values and building an output) is done once per build, not once per
    task. Nothing here calls the host; of the application's code, only what
    reading a remote function's signature runs (a callable object's
    attribute hooks), and what fails there is left to the first call."""
    for name, f in list(FUNCTIONS.items()):
        try:
            if f._fn is not None:
                _FUNCTION_ARITIES[name] = _arity(f._fn, False)
        except BaseException:  # a callable's own attribute hook: left to the first call
            pass
    if "asyncio" in sys.modules:  # `asyncio.run` in an instance gets the fabric's loop
        from . import _aio

        _aio.install()
    for _ in range(_WARM_ROUNDS):
        for value in _WARM_VALUES:
            e = encode(value)
            decode(e.data)
            _output("warm", value, 1)
            _decode_args("warm", (0, None), [e.data])


def _as_returned(out):
    """A call's `output` (of one value) as `finish-call` takes it."""
    if type(out) is guest.Output_Value:
        return host.Returned(value=out.value, nested=[])
    return host.Returned(value=out.value.value, nested=out.value.nested)


def _returned(what, value, call):
    """A concurrent call's value as `finish-call` takes it (a generator's
    items go to `call` first)."""
    return _as_returned(_output(what, value, 1, call))


class Guest(exports.Guest):
    def dispatch(self, function, args):
        f = FUNCTIONS.get(function)
        if f is None:
            names = ", ".join(sorted(FUNCTIONS)) or "none"
            raise Err(failure(function, "unknown-function",
                              f"no remote function named `{function}` (this component has: {names})"))
        arity = _FUNCTION_ARITIES.get(function)
        if arity is None:
            arity = _FUNCTION_ARITIES[function] = _arity(f._fn, False)
        values = _decode_args(function, arity, args)
        return _output(function, _run(function, f._fn, values), f._returns)

    def actor_new(self, class_, args):
        what = f"{class_}.new"
        c = CLASSES.get(class_)
        if c is None:
            raise Err(failure(what, "unknown-function", f"no actor class named `{class_}`"))
        init = c._cls.__init__
        arity = (0, 0) if init is object.__init__ else _arity(init, True)
        values = _decode_args(what, arity, args)
        _METHODS.clear()
        _ACTOR[:] = [(class_, _run(what, c._cls, values))]

    def _method(self, method):
        """(what, the bound method, its arity) of the actor's `method`."""
        known = _METHODS.get(method)
        if known is not None and _still(method, *known[3:]):
            return known[:3]
        if not _ACTOR:
            raise Err(failure(method, "system", "this instance holds no actor"))
        name, obj = _ACTOR[0]
        what = f"{name}.{method}"
        try:
            fn = None if method.startswith("_") else getattr(obj, method, None)
        except BaseException as e:  # a property or __getattr__ that raised
            raise Err(to_wit(what, e))
        if fn is None or not callable(fn):
            raise Err(failure(what, "unknown-function", f"actor `{name}` has no method `{method}`"))
        bound = hasattr(fn, "__func__")
        found = what, fn, _arity(fn.__func__ if bound else fn, bound)
        _remember(method, found, obj)
        return found

    def actor_call(self, method, args, call=None):
        what, fn, arity = self._method(method)
        values = _decode_args(what, arity, args)
        return _output(what, _run(what, fn, values), 1, call)

    def actor_run(self):
        # A class with `async def` methods interleaves its calls on an event
        # loop; another created with `max_concurrency` takes them one at a
        # time (a guest has no threads to run them side by side).
        if _ACTOR and has_coroutines(type(_ACTOR[0][1])):
            from . import _aio

            return _aio.ConcurrentCalls(self._begin_call, _returned, to_wit, _stream).run()
        while True:
            try:
                event = host.next_event([], None)
            except Err as e:
                raise Err(e.value)
            if isinstance(event, host.ActorEvent_Stop):
                return
            if not isinstance(event, host.ActorEvent_Call):
                continue
            call = event.value
            try:
                out = self.actor_call(call.method, call.args, call.call)
                host.finish_call(call.call, Ok(_as_returned(out)))
            except Err as e:
                host.finish_call(call.call, Err(e.value))

    def _begin_call(self, call):
        what, fn, arity = self._method(call.method)
        return what, _call(what, fn, _decode_args(what, arity, call.args))

    def main(self, args):
        if not MAIN:
            raise Err("this component has no driver: mark a function with @fabric.main")
        fn = MAIN[0]
        try:
            done = fn(list(args)) if fn.__code__.co_argcount >= 1 else fn()
            if type(done) is CoroutineType:  # `async def main`
                from . import _aio

                _aio.run_blocking(done)
        except SystemExit as e:
            if e.code not in (None, 0):
                raise Err(f"the driver exited with status {e.code}")
        except Exception as e:
            raise Err("".join(traceback.format_exception(e))[-8192:].rstrip())
        finally:
            _flush()
