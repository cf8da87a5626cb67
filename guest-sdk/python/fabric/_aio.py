"""Coroutines on the fabric: the event loop of a concurrent actor, and the
loop `asyncio.run` gets anywhere in a guest.

A class with `async def` methods is a concurrent actor (Ray's async
actors): the host hands it up to `max_concurrency` calls at once (default
1,000) and they interleave on one event loop. A call runs until it awaits
something (an `ObjectRef`, `asyncio.sleep`, an `asyncio.Event` that another
call sets); meanwhile the others run. The actor's state is one object all
calls share.

    import asyncio
    import fabric

    @fabric.remote
    class Napper:
        async def nap(self, seconds):
            await asyncio.sleep(seconds)  # ten naps at once take one nap's time
            return "rested"

        async def total(self, refs):
            return sum(await asyncio.gather(*refs))  # objects, awaited

An `async def` method with `yield` (an async generator) streams: each of
its items goes to the caller as it comes, and where the caller has not
taken `backpressure` items yet, the generator awaits room while the other
calls run (`yield-call-item` without waiting, then `room` from
`next-event`). A plain generator method runs at once, as sync methods do.

The loop is asyncio's own `BaseEventLoop` with the host in place of its
selector: where asyncio would wait on sockets, this loop waits on the host,
with `next-event` inside a concurrent actor (a new call, an awaited object
is ready, the next timer) and with `wait` everywhere else (a task, the
driver, an async class's actor created by another language's handle without
`max_concurrency`), where an `async def` runs to its end before the call
returns. A guest has no sockets, so
asyncio's default loop cannot start there: `install()` makes this loop the
one `asyncio.run` and `asyncio.new_event_loop` create. Threads do not exist
in a guest, so `run_in_executor` and `asyncio.to_thread` fail.
"""

import asyncio
import math
import time
from asyncio import base_events, events
from types import AsyncGeneratorType, CoroutineType

from wit_world.imports import host, types
from componentize_py_types import Err, Ok

from ._wit import failure, raise_error

#: How many turns of the loop in a row may skip asking the host for news
#: while callbacks are ready: new calls and ready objects still get in
#: while coroutines keep the loop busy, at one host call per this many
#: turns rather than one per turn.
_TURNS_BETWEEN_POLLS = 16
#: The most objects one wait hands the host (its bound on `next-event`);
#: more are watched in later turns.
_MAX_WATCHED = 65_536
#: The WIT's error cases: what an `Err` raised by the SDK's own code holds.
_WIT_ERRORS = tuple(v for k, v in vars(types).items() if k.startswith("Error_") and isinstance(v, type))


class _HostSelector:
    """What `BaseEventLoop` calls where it would wait on its selector."""

    __slots__ = ("_loop",)

    def __init__(self, loop):
        self._loop = loop

    def select(self, timeout):
        self._loop._wait_on_host(timeout)
        return ()

    def close(self):
        pass


def _ms(timeout):
    """A loop timeout (seconds, None for forever) in whole milliseconds,
    rounded up so that a timer due in 0.3 ms is not polled for in a spin."""
    return None if timeout is None else math.ceil(timeout * 1000)


class FabricLoop(base_events.BaseEventLoop):
    """An asyncio event loop that waits on the host. With `calls` (a
    concurrent actor's `actor-run`) it also takes the actor's calls."""

    def __init__(self, calls=None):
        super().__init__()
        self._selector = _HostSelector(self)
        #: (ObjectRef, future) for each object a coroutine awaits.
        self._watched = []
        self._calls = calls
        self._turns_without_poll = 0

    def _process_events(self, event_list):
        pass

    def _write_to_self(self):
        pass  # one thread: nothing to wake

    def watch(self, ref):
        """A future that is done once `ref`'s object is ready (or failed)."""
        fut = self.create_future()
        self._watched.append((ref, fut))
        return fut

    def _live_watches(self):
        # A future no one waits for any more (its task cancelled, a
        # `wait_for` that timed out) is no reason to ask the host.
        self._watched = [w for w in self._watched if not w[1].done()]
        return self._watched[:_MAX_WATCHED]

    def _wait_on_host(self, timeout):
        if timeout == 0:
            if self._turns_without_poll < _TURNS_BETWEEN_POLLS:
                self._turns_without_poll += 1
                return
        self._turns_without_poll = 0
        watched = self._live_watches()
        if self._calls is not None:
            self._calls.next_event(watched, _ms(timeout))
        elif watched:
            _resolve(watched, _wait(watched, _ms(timeout)))
        elif timeout is None:
            raise RuntimeError(
                "the event loop has nothing to wait for: every coroutine awaits something "
                "only another call could provide, and only a concurrent actor (a class with "
                "`async def` methods) takes calls while it waits"
            )
        elif timeout > 0:
            time.sleep(timeout)


def _wait(watched, timeout_ms):
    """The indices of the watched objects that are ready: all that already
    are, or else the first to become so within the timeout."""
    handles = [r._handle for r, _ in watched]
    try:
        ready = host.wait(handles, len(handles), 0)
        if not ready and timeout_ms != 0:
            ready = host.wait(handles, 1, timeout_ms)
    except Err as e:
        raise_error(e.value)
    return ready


def _resolve(watched, indices):
    for i in indices:
        if i < len(watched):
            fut = watched[i][1]
            if not fut.done():
                fut.set_result(None)


async def _outcome(coro):
    """Runs a call's coroutine and returns (True, value) or (False, the
    exception): `SystemExit` and `KeyboardInterrupt` too, which asyncio
    would let out of the loop and so take every call of the actor down."""
    try:
        return True, await coro
    except BaseException as e:
        return False, e


class ConcurrentCalls:
    """A concurrent actor's calls: what its loop does with each host event.

    `begin(call)` starts a call and returns (what, value), where value is
    the method's result or the coroutine that will produce it, or raises
    `Err`; `finish(what, value, call)` makes the value `finish-call` takes;
    `fail(what, exc)` turns an exception into the host's error;
    `stream(what, call, items, room)` is the coroutine that hands an async
    generator's items to the caller, awaiting `room(call)` when it must."""

    def __init__(self, begin, finish, fail, stream):
        self._begin = begin
        self._finish = finish
        self._fail = fail
        self._stream = stream
        #: Futures of streaming calls waiting for room, by call id.
        self._rooms = {}
        #: The calls' tasks by call id (asyncio keeps tasks only weakly: a
        #: task awaiting a future no one else holds would be collected).
        self._tasks = {}
        self._in_flight = 0
        self._stopping = False
        self._over = False
        self.loop = FabricLoop(self)

    def next_event(self, watched, timeout_ms):
        # A refusal (`next-event` outside `actor-run`) ends `actor-run` with it.
        event = host.next_event([r._handle for r, _ in watched], timeout_ms)
        if isinstance(event, host.ActorEvent_Call):
            self._start(event.value)
        elif isinstance(event, host.ActorEvent_Ready):
            _resolve(watched, event.value)
        elif isinstance(event, host.ActorEvent_Room):
            for call_id in event.value:
                fut = self._rooms.pop(call_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(None)
        elif isinstance(event, host.ActorEvent_Stop):
            if self._stopping:
                # Said twice: the host holds no call in flight, so what is
                # left here already ran out of time (the host failed it) or
                # waits for something no call will ever provide.
                self._end()
            self._stopping = True
        self._stop_when_idle()

    def _stop_when_idle(self):
        if self._stopping and not self._in_flight:
            self._end()

    def _end(self):
        self._over = True
        self.loop.stop()

    def _start(self, call):
        self._in_flight += 1
        call_id = call.call
        try:
            what, value = self._begin(call)
        except Err as e:
            return self._done(call_id, Err(e.value))
        if type(value) is AsyncGeneratorType:
            value = self._stream(what, call_id, value, self._room)
        if type(value) is CoroutineType:
            task = self.loop.create_task(_outcome(value))
            self._tasks[call_id] = task
            task.add_done_callback(lambda t: self._task_done(call_id, what, t))
        else:
            self._settle(call_id, what, value)

    def _room(self, call_id):
        """A future done once the host says `room` for streaming call
        `call_id`."""
        fut = self._rooms.get(call_id)
        if fut is None or fut.done():
            fut = self._rooms[call_id] = self.loop.create_future()
        return fut

    def _task_done(self, call_id, what, task):
        self._tasks.pop(call_id, None)
        self._rooms.pop(call_id, None)
        try:
            ok, value = task.result()
            if not ok:
                wit = isinstance(value, Err) and isinstance(value.value, _WIT_ERRORS)
                error = value.value if wit else self._fail(what, value)
                return self._done(call_id, Err(error))
        except BaseException as e:  # cancelled, or the error could not be told
            return self._done(call_id, Err(failure(what, "application-error", f"{type(e).__name__}")))
        self._settle(call_id, what, value)

    def _settle(self, call_id, what, value):
        try:
            outcome = Ok(self._finish(what, value, call_id))
        except Err as e:
            outcome = Err(e.value)
        self._done(call_id, outcome)

    def _done(self, call_id, outcome):
        self._in_flight -= 1
        host.finish_call(call_id, outcome)
        self._stop_when_idle()

    def run(self):
        """Takes calls until the host says stop and none is in flight (a
        `loop.stop()` of the application's own does not end the actor)."""
        try:
            while not self._over:
                self.loop.run_forever()
        finally:
            self.loop.close()


#: The loop that runs a coroutine to its end outside a concurrent actor:
#: made once per instance, on first use.
_BLOCKING = []


def run_blocking(coro):
    """Runs `coro` to its end and returns what it returns (an `async def`
    task or driver, or a method of an async class's actor that takes its
    calls one at a time). Tasks it started and left behind are cancelled,
    as `asyncio.run` does, so none runs on into the next call."""
    if events._get_running_loop() is not None:
        coro.close()
        raise RuntimeError("an `async def` result inside a running event loop: await it instead")
    if not _BLOCKING:
        _BLOCKING.append(FabricLoop())
    loop = _BLOCKING[0]
    try:
        return loop.run_until_complete(coro)
    finally:
        _cancel_leftovers(loop)


def sync_items(items):
    """The items of the async generator `items` as a plain generator, each
    awaited to its end on the blocking loop (a task, a plain actor's
    method: no other call waits for this one to await). Closing it closes
    `items`; tasks the generator left behind are cancelled at the end."""
    if events._get_running_loop() is not None:
        raise RuntimeError("an async generator inside a running event loop: iterate it with `async for`")
    if not _BLOCKING:
        _BLOCKING.append(FabricLoop())
    loop = _BLOCKING[0]
    try:
        while True:
            try:
                item = loop.run_until_complete(items.__anext__())
            except StopAsyncIteration:
                return
            yield item
    finally:
        try:
            loop.run_until_complete(items.aclose())
        except BaseException:  # its own cleanup failing
            pass
        _cancel_leftovers(loop)


def _cancel_leftovers(loop):
    left = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in left:
        t.cancel()
    if left:
        try:
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
        except BaseException:  # one that ignores its cancellation and waits for nothing
            pass
    loop._watched = []


async def await_ref(ref, get):
    """What `await ref` runs: waits for the object on the running fabric
    loop, then gets it (raising what a failed task raised)."""
    loop = events._get_running_loop()
    if isinstance(loop, FabricLoop):
        await loop.watch(ref)
    return get(ref)


# CPython 3.14's names (the interpreter componentize-py 0.25.1 embeds).
class _Policy(events._BaseDefaultEventLoopPolicy):
    _loop_factory = FabricLoop


def install():
    """Makes `FabricLoop` the loop asyncio creates (`asyncio.run`,
    `new_event_loop`). Called at build time when the application imported
    asyncio or declared an `async def` entry point, so instances start with
    it in place."""
    if not isinstance(events._get_event_loop_policy(), _Policy):
        events._set_event_loop_policy(_Policy())
