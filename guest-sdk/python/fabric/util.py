"""Utilities over actors (Ray's `ray.util`): `ActorPool`, which spreads
work over a fixed set of actors.

    from fabric.util import ActorPool

    pool = ActorPool([Worker.remote() for _ in range(4)])
    squares = list(pool.map(lambda a, v: a.square.remote(v), range(10)))
"""

from . import _api
from .errors import GetTimeoutError


class _Raised:
    """The exception a submission raised instead of returning a reference:
    its result, returned (raised) in its turn."""

    __slots__ = ("error",)

    def __init__(self, error):
        self.error = error


class ActorPool:
    """Work spread over `actors`: each takes one submitted call at a time;
    results come back in submission order (`get_next`, `map`) or as they
    finish (`get_next_unordered`, `map_unordered`). Ray's `ActorPool`."""

    def __init__(self, actors):
        self._idle = list(actors)
        self._future_to_actor = {}  # ObjectRef or _Raised -> (submission index, actor)
        self._index_to_future = {}  # submission index -> ObjectRef or _Raised
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending = []  # (fn, value) waiting for an idle actor

    def submit(self, fn, value):
        """Schedules `fn(actor, value)` (which must return an `ObjectRef`,
        e.g. `lambda a, v: a.method.remote(v)`) on an idle actor, or once
        one is free. If `fn` raises, the actor stays in the pool and the
        exception is this submission's result."""
        if not self._idle:
            self._pending.append((fn, value))
            return
        actor = self._idle.pop()
        try:
            ref = fn(actor, value)
        except Exception as e:
            ref = _Raised(e)
        index = self._next_task_index
        self._next_task_index += 1
        self._index_to_future[index] = ref
        if type(ref) is _Raised:
            self._future_to_actor[ref] = (index, None)
            self._return_actor(actor)  # nothing runs on it
        else:
            self._future_to_actor[ref] = (index, actor)

    def has_next(self):
        """Whether any submitted result has not been returned yet."""
        return bool(self._future_to_actor) or bool(self._pending)

    def get_next(self, timeout=None):
        """The next result in submission order, waiting up to `timeout`
        seconds (`GetTimeoutError` after)."""
        if not self.has_next():
            raise StopIteration("no more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("it is not allowed to call get_next() after get_next_unordered()")
        ref = self._index_to_future[self._next_return_index]
        if timeout is not None and type(ref) is not _Raised:
            ready, _ = _api.wait([ref], num_returns=1, timeout=timeout)
            if not ready:
                raise GetTimeoutError("timed out waiting for the next result")
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        return self._take(ref)

    def get_next_unordered(self, timeout=None):
        """The next result to finish, in any order, waiting up to `timeout`
        seconds (`GetTimeoutError` after)."""
        if not self.has_next():
            raise StopIteration("no more results to get")
        raised = [r for r in self._future_to_actor if type(r) is _Raised]
        if raised:
            ref = raised[0]
        else:
            ready, _ = _api.wait(list(self._future_to_actor), num_returns=1, timeout=timeout)
            if not ready:
                raise GetTimeoutError("timed out waiting for a result")
            ref = ready[0]
        index = self._future_to_actor[ref][0]
        self._index_to_future.pop(index, None)
        self._next_return_index = max(self._next_return_index, index + 1)
        return self._take(ref)

    def _take(self, ref):
        """Returns (or raises) `ref`'s result and frees its actor."""
        _, actor = self._future_to_actor.pop(ref)
        if actor is not None:
            self._return_actor(actor)
        if type(ref) is _Raised:
            raise ref.error
        return _api.get(ref)

    def _drop_earlier(self):
        # Earlier submissions are waited for and their results dropped, as
        # Ray's `map` and `map_unordered` do.
        while self.has_next():
            try:
                self.get_next_unordered()
            except Exception:
                pass

    def map(self, fn, values):
        """Submits `fn(actor, value)` for each of `values` now, spread over
        the pool; returns an iterator of the results in the order of
        `values`."""
        return self._results(fn, values, self.get_next)

    def map_unordered(self, fn, values):
        """As `map`, but the iterator yields each result as soon as it is
        ready."""
        return self._results(fn, values, self.get_next_unordered)

    def _results(self, fn, values, take):
        # Submitted now, as Ray does; the results come as `take` gives them.
        self._drop_earlier()
        for v in values:
            self.submit(fn, v)

        def results():
            while self.has_next():
                yield take()

        return results()

    def has_free(self):
        """Whether an actor is idle and no submission waits."""
        return bool(self._idle) and not self._pending

    def pop_idle(self):
        """Removes an idle actor from the pool and returns it (None if none
        is idle)."""
        if self.has_free():
            return self._idle.pop()
        return None

    def push(self, actor):
        """Adds `actor` to the pool (it must not be in it already, by any
        handle)."""
        busy = [a for _, a in self._future_to_actor.values() if a is not None]
        if any(a == actor for a in self._idle) or any(a == actor for a in busy):
            raise ValueError("the actor is already in the pool")
        self._return_actor(actor)

    def _return_actor(self, actor):
        self._idle.append(actor)
        if self._pending:
            self.submit(*self._pending.pop(0))
