"""The API: remote functions and actor classes, and the calls on objects."""

import inspect

from wit_world.imports import host, types
from componentize_py_types import Err

from . import errors, _values
from ._values import ObjectRef, encode, decode, wit_id, id_bytes
from ._groups import PlacementGroupSchedulingStrategy, resource_dict
from ._wit import raise_error

#: Remote functions and actor classes of this component, by name.
FUNCTIONS = {}
CLASSES = {}
MAIN = []

_TASK_KEYS = {"num_cpus", "num_gpus", "memory", "resources", "max_retries", "retry_exceptions",
              "name", "num_returns", "scheduling_strategy", "backpressure"}
#: `num_returns` of a streaming generator (Ray's spelling).
STREAMING = "streaming"
_ACTOR_KEYS = {"num_cpus", "num_gpus", "memory", "resources", "max_restarts", "max_task_retries",
               "max_concurrency", "name", "namespace", "lifetime", "get_if_exists",
               "scheduling_strategy"}


def _resources(opts, default_cpus):
    cpus = opts.get("num_cpus", default_cpus)
    custom = sorted((str(k), float(v)) for k, v in (opts.get("resources") or {}).items())
    return types.Resources(
        num_cpus=None if cpus is None else float(cpus),
        num_gpus=None if opts.get("num_gpus") is None else float(opts["num_gpus"]),
        memory=None if opts.get("memory") is None else int(opts["memory"]),
        custom=custom,
    )


def _placement(strategy):
    if strategy is None:
        return None
    if strategy == "SPREAD":
        return types.Placement_Spread()
    if isinstance(strategy, NodeAffinity):
        return types.Placement_Node(types.NodeAffinity(node_id=strategy.node_id, soft=strategy.soft))
    if isinstance(strategy, PlacementGroupSchedulingStrategy):
        return strategy._wit()
    raise errors.InvalidArgumentError(f"unknown scheduling strategy {strategy!r}")


class NodeAffinity:
    """Run on the node with this id (`fabric.context().node_id`), or prefer
    it (`soft=True`)."""

    def __init__(self, node_id, soft=False):
        self.node_id = node_id
        self.soft = soft


def _check_keys(opts, allowed, what):
    unknown = set(opts) - allowed
    if unknown:
        raise TypeError(f"unknown {what} option(s): {', '.join(sorted(unknown))}")


def _args(args):
    """Host arguments: a reference passed on its own is resolved by the host
    (the callee gets its value); anything else is encoded, with the
    references nested in it."""
    wire, nested = [], []
    for a in args:
        if isinstance(a, ObjectRef):
            wire.append(host.Arg_Object(a._handle))
        else:
            e = encode(a)
            wire.append(host.Arg_Value(e.data))
            nested.extend(e.nested)
    return wire, nested


def _positional(fn, args, kwargs):
    """Keyword arguments as positions (a call carries arguments by
    position): defaults fill the gaps before a later keyword."""
    if not kwargs:
        return args
    bound = inspect.signature(fn).bind(*args, **kwargs)
    bound.apply_defaults()
    if bound.kwargs:
        names = ", ".join(sorted(bound.kwargs))
        raise TypeError(f"keyword-only arguments cannot be passed to a remote call: {names}")
    return bound.args


class RemoteFunction:
    """A function run as a task: `f.remote(*args)` returns an `ObjectRef`
    (a list of them with `num_returns` > 1)."""

    def __init__(self, fn, options, name=None):
        _check_keys(options, _TASK_KEYS, "task")
        self._fn = fn
        self._name = name or fn.__name__
        self._opts = options
        returns = options.get("num_returns")
        generator = fn is not None and _is_generator(fn)
        if returns == STREAMING and fn is not None and not generator:
            raise errors.InvalidArgumentError(
                f"`{self._name}` is not a generator: num_returns=\"streaming\" needs one"
            )
        if returns not in (None, STREAMING) and (
            type(returns) is not int or returns < 1
        ):
            raise errors.InvalidArgumentError(
                f"num_returns must be a count of at least 1 or \"streaming\", not {returns!r}"
            )
        # A generator function streams unless told otherwise, as in Ray.
        self._stream = returns == STREAMING or (returns is None and generator)
        self._returns = 1 if self._stream else (returns or 1)
        self._wit = types.TaskOptions(
            resources=_resources(options, None),
            placement=_placement(options.get("scheduling_strategy")),
            max_retries=options.get("max_retries"),
            retry_exceptions=bool(options.get("retry_exceptions", False)),
            name=options.get("name"),
            num_returns=None if self._returns == 1 else self._returns,
            backpressure=options.get("backpressure"),
        )

    def __call__(self, *args, **kwargs):
        raise TypeError(
            f"remote function `{self._name}` cannot be called directly: use `{self._name}.remote(...)`"
        )

    def options(self, **options):
        """The same function with other options (Ray's `.options`)."""
        merged = dict(self._opts)
        merged.update(options)
        return RemoteFunction(self._fn, merged, self._name)

    def remote(self, *args, **kwargs):
        if kwargs and self._fn is None:
            raise TypeError(f"`{self._name}` is another component's: pass its arguments by position")
        wire, nested = _args(_positional(self._fn, args, kwargs))
        try:
            if self._stream:
                return ObjectRefGenerator(host.submit_stream(self._name, wire, nested, self._wit))
            if self._returns == 1:
                return ObjectRef(host.submit(self._name, wire, nested, self._wit))
            return [ObjectRef(h) for h in host.submit_returns(self._name, wire, nested, self._wit)]
        except Err as e:
            raise_error(e.value)


class ActorClass:
    """A class whose instances are actors: `Cls.remote(*args)` returns an
    `ActorHandle`."""

    def __init__(self, cls, options, name=None):
        _check_keys(options, _ACTOR_KEYS, "actor")
        lifetime = options.get("lifetime")
        if lifetime not in (None, "detached", "non_detached"):
            raise errors.InvalidArgumentError(f"lifetime must be 'detached', not {lifetime!r}")
        if name is None and "max_concurrency" not in options and _is_async(cls):
            # Ray's default for an async actor: its calls interleave. (Asked
            # once, by `@fabric.remote`; `.options()` inherits the answer.)
            options = dict(options, max_concurrency=1000)
        self._cls = cls
        self._name = name or cls.__name__
        self._opts = options
        self._wit = types.ActorOptions(
            resources=_resources(options, None),
            placement=_placement(options.get("scheduling_strategy")),
            detached=lifetime == "detached",
            name=options.get("name"),
            namespace=options.get("namespace"),
            get_if_exists=bool(options.get("get_if_exists", False)),
            max_restarts=options.get("max_restarts"),
            max_task_retries=options.get("max_task_retries"),
            max_concurrency=options.get("max_concurrency"),
        )

    def __call__(self, *args, **kwargs):
        raise TypeError(f"actor class `{self._name}` cannot be instantiated directly: use `.remote(...)`")

    def options(self, **options):
        merged = dict(self._opts)
        merged.update(options)
        return ActorClass(self._cls, merged, self._name)

    def remote(self, *args, **kwargs):
        if kwargs:
            init = getattr(self._cls, "__init__", None) if self._cls else None
            if init is None:
                raise TypeError(f"`{self._name}`: pass its constructor's arguments by position")
            args = _positional(init, (None,) + args, kwargs)[1:]
        wire, nested = _args(args)
        try:
            handle = host.create_actor(self._name, wire, nested, self._wit)
        except Err as e:
            raise_error(e.value)
        return ActorHandle(ObjectRef(handle), self._name)


class ActorHandle:
    """A handle to an actor: `handle.method.remote(*args)` queues a call and
    returns an `ObjectRef`. Handles travel inside values; an actor that is
    neither named nor detached stops once its last handle is gone."""

    __slots__ = ("_fabric_ref", "_class", "_methods")

    def __init__(self, ref, class_name=None):
        self._fabric_ref = ref
        self._class = class_name
        self._methods = None

    def __getattr__(self, method):
        # Checked first: a handle made without `__init__` (a copy, say) has
        # no `_methods`, and looking it up comes back here.
        if method.startswith("_"):
            raise AttributeError(method)
        # `handle.method` is looked up on every call: each handle keeps the
        # `ActorMethod`s it made (at most _METHODS_KEPT names, so a program
        # that makes up names cannot grow a handle without bound).
        try:
            methods = self._methods
        except AttributeError:
            methods = None
        if methods is not None:
            known = methods.get(method)
            if known is not None:
                return known
        made = ActorMethod(self._fabric_ref, self._class, method)
        if methods is None:
            self._methods = methods = {}
        if len(methods) < _METHODS_KEPT:
            methods[method] = made
        return made

    def __eq__(self, other):
        return isinstance(other, ActorHandle) and self._fabric_ref == other._fabric_ref

    def __hash__(self):
        return hash(self._fabric_ref)

    def __repr__(self):
        return f"ActorHandle({self._class or 'actor'}, {self._fabric_ref.hex()})"


_values.ActorHandle = ActorHandle

#: How many methods' `ActorMethod`s a handle keeps.
_METHODS_KEPT = 64


class ActorMethod:
    """A method of an actor: `.remote(*args)` queues a call. A generator
    method of a class of this component streams (the call returns an
    `ObjectRefGenerator`); for another component's, say so with
    `.options(num_returns="streaming")`."""

    # The actor's reference, not its handle: a handle keeps its methods,
    # and a method that kept the handle would make a cycle, which only a
    # collection (not the last reference going) would free.
    __slots__ = ("_ref", "_class", "_method", "_stream", "_backpressure")

    def __init__(self, ref, class_name, method, stream=None, backpressure=None):
        self._ref = ref
        self._class = class_name
        self._method = method
        if stream is None:
            stream = _streams(class_name, method)
        self._stream = stream
        self._backpressure = backpressure

    def options(self, num_returns=None, backpressure=None):
        """This method called as a streaming generator
        (`num_returns="streaming"`), with at most `backpressure` items
        yielded and not yet taken (default 64)."""
        if num_returns not in (None, 1, STREAMING):
            raise errors.InvalidArgumentError(
                f"an actor method returns one value or streams, not num_returns={num_returns!r}"
            )
        stream = num_returns == STREAMING or (num_returns is None and self._stream)
        return ActorMethod(self._ref, self._class, self._method, stream, backpressure)

    def remote(self, *args):
        wire, nested = _args(args) if args else ([], [])
        actor = self._ref._handle
        try:
            if self._stream:
                return ObjectRefGenerator(
                    host.call_actor_stream(actor, self._method, wire, nested, self._backpressure)
                )
            h = host.call_actor(actor, self._method, wire, nested)
        except Err as e:
            raise_error(e.value)
        return ObjectRef(h)


#: Whether a method of a class of this component is a generator, by
#: (class name, method name): looked up once, not on every call.
_STREAMING_METHODS = {}


def _streams(class_name, method):
    key = (class_name, method)
    known = _STREAMING_METHODS.get(key)
    if known is None:
        cls = CLASSES.get(class_name)
        known = cls is not None and _is_generator(getattr(cls._cls, method, None))
        _STREAMING_METHODS[key] = known
    return known


def _is_generator(fn):
    """Whether `fn` (through `functools.wraps` wrappers) is a generator
    function, plain or `async def`."""
    if fn is None:
        return False
    try:
        fn = inspect.unwrap(fn)
        return inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
    except Exception:
        return False


class ObjectRefGenerator:
    """The items of a streaming generator (Ray's `ObjectRefGenerator`), as
    its caller takes them: iterate it for an `ObjectRef` per item, in the
    order they were yielded. A generator that failed raises its error after
    its last item. `close()` (or dropping it) stops the generator and frees
    the items not taken. In a coroutine, `async for ref in gen` takes them
    without holding up the actor's other calls."""

    __slots__ = ("_stream", "_done")

    def __init__(self, stream):
        self._stream = stream
        self._done = False

    def __iter__(self):
        return self

    def __next__(self):
        return self.next()

    def next(self, timeout=None):
        """The next item, waiting up to `timeout` seconds (forever when
        None; `GetTimeoutError` after, and the stream goes on);
        `StopIteration` at the end."""
        if self._done:
            raise StopIteration
        try:
            h = self._stream.next(_timeout_ms(timeout))
        except Err as e:
            if not isinstance(e.value, types.Error_Timeout):
                self.close()
            raise_error(e.value)
        if h is None:
            self.close()
            raise StopIteration
        return ObjectRef(h)

    def __aiter__(self):
        return self

    async def __anext__(self):
        # The host has no event for "an item came": ask without waiting,
        # and between asks let the loop run the actor's other calls,
        # backing off from 1 ms to 16 ms while nothing comes.
        import asyncio

        pause = 0.001
        while True:
            try:
                return self.next(0)
            except StopIteration:
                raise StopAsyncIteration from None
            except errors.GetTimeoutError:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.016)

    def close(self):
        """Stops the generator (if it still runs) and frees what it yielded
        that was not taken."""
        if not self._done:
            self._done = True
            self._stream.__exit__(None, None, None)


def remote(*args, **options):
    """Makes a function a remote function, or a class an actor class, with
    Ray's options (`num_cpus`, `num_gpus`, `memory`, `resources`,
    `max_retries`, `retry_exceptions`, `num_returns` for functions;
    `max_restarts`, `max_task_retries`, `max_concurrency`, `name`,
    `namespace`, `lifetime="detached"`, `get_if_exists` for classes)."""

    def wrap(target):
        if _is_async(target):
            # Imported now, at build time, so instances start with asyncio
            # loaded and its loop installed rather than importing it per task.
            from . import _aio

            _aio.install()
        if isinstance(target, type):
            cls = ActorClass(target, options)
            CLASSES[cls._name] = cls
            return cls
        fn = RemoteFunction(target, options)
        FUNCTIONS[fn._name] = fn
        return fn

    if len(args) == 1 and not options and callable(args[0]):
        return wrap(args[0])
    if args:
        raise TypeError("use @fabric.remote or @fabric.remote(option=value, ...)")
    return wrap


def _is_async(target):
    """An `async def` function, or a class with `async def` methods."""
    if isinstance(target, type):
        return has_coroutines(target)
    return inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target)


def has_coroutines(cls):
    """Whether a class has `async def` methods (its actors are concurrent)."""
    for name in dir(cls):
        if name.startswith("_"):
            continue
        try:
            method = getattr(cls, name)
            if inspect.iscoroutinefunction(method) or inspect.isasyncgenfunction(method):
                return True
        except Exception:
            continue
    return False


def function(component, name, **options):
    """The remote function `name` of the job's component `component` (in
    any language, named in the job manifest's `[components]`):
    `fabric.function("scoring", "score").remote(x)`."""
    return RemoteFunction(None, options, f"{component}/{name}")


def actor_class(component, name, **options):
    """The actor class `name` of the job's component `component`:
    `fabric.actor_class("rust", "Counter").remote()` returns a handle whose
    methods are called by name."""
    return ActorClass(None, options, f"{component}/{name}")


def main(fn):
    """Marks the driver: the function `fabric run` calls, with the
    command-line arguments when it takes one parameter."""
    if inspect.iscoroutinefunction(fn):
        from . import _aio  # now, at build time: an instance imports nothing

        _aio.install()
    MAIN[:] = [fn]
    return fn


def _handles(refs):
    return [r._handle for r in refs]


def _timeout_ms(timeout):
    return None if timeout is None else max(0, int(timeout * 1000))


def get(refs, timeout=None):
    """The value of an object, or the values of a list of them, waiting up
    to `timeout` seconds (forever when None). A failed task raises."""
    try:
        if isinstance(refs, ObjectRef):
            return decode(host.get(refs._handle, _timeout_ms(timeout)))
        handles = []
        for r in refs:
            if not isinstance(r, ObjectRef):
                raise TypeError(f"fabric.get takes ObjectRefs, not {type(r).__name__}")
            handles.append(r._handle)
        return [decode(v) for v in host.get_many(handles, _timeout_ms(timeout))]
    except Err as e:
        raise_error(e.value)


def put(value):
    """Stores `value` in the object store; returns its reference."""
    e = encode(value)
    try:
        return ObjectRef(host.put(e.data, e.nested))
    except Err as err:
        raise_error(err.value)


def wait(refs, num_returns=1, timeout=None):
    """Waits until `num_returns` of `refs` are ready or `timeout` seconds
    pass; returns (ready, not_ready), each in the order of `refs`."""
    refs = list(refs)
    try:
        ready = set(host.wait(_handles(refs), num_returns, _timeout_ms(timeout)))
    except Err as e:
        raise_error(e.value)
    return ([r for i, r in enumerate(refs) if i in ready],
            [r for i, r in enumerate(refs) if i not in ready])


def cancel(ref):
    """Cancels the task that produces `ref`; its result raises
    `TaskCancelledError`."""
    try:
        host.cancel(ref._handle)
    except Err as e:
        raise_error(e.value)


def kill(actor):
    """Stops an actor; its queued calls raise `ActorDiedError`."""
    try:
        host.kill_actor(actor._fabric_ref._handle)
    except Err as e:
        raise_error(e.value)


def get_deployment_handle(name):
    """A handle to the Serve deployment `name` of this tenant (Ray Serve's
    `serve.get_deployment_handle`): `handle.call.remote(request)` calls one
    of its replicas, chosen as the ingress chooses one for a request, after
    waiting (within the deployment's `request_timeout`) for a place in its
    bounded queue; a full queue raises `LimitExceededError`."""
    return get_actor(name, namespace="serve")


def get_actor(name, namespace=None):
    """The actor registered under `name`."""
    try:
        return ActorHandle(ObjectRef(host.get_actor(name, namespace)))
    except Err as e:
        raise_error(e.value)


class RuntimeContext:
    """Where the current code runs."""

    def __init__(self, c):
        self.job_id = c.job_id
        self.node_id = c.node_id
        self.task_id = c.task_id
        self.actor_id = None if c.actor_id is None else id_bytes(c.actor_id).hex()
        self.gpu_ids = list(c.gpu_ids)

    def __repr__(self):
        return f"RuntimeContext(job_id={self.job_id!r}, node_id={self.node_id!r})"


def context():
    """Where the current code runs: job, node, task or actor, GPU ids."""
    return RuntimeContext(host.context())


def cluster_resources():
    """Everything the cluster's live nodes have (Ray's names: CPU, GPU,
    memory, custom resources)."""
    return resource_dict(host.cluster_resources())


def available_resources():
    """What the caller's tenant may still take (or, when the operator shows
    the cluster's load, what is free)."""
    return resource_dict(host.available_resources())


def save_checkpoint(state):
    """Saves the calling actor's state; a restarted actor reads it with
    `load_checkpoint`."""
    e = encode(state)
    try:
        host.save_checkpoint(e.data)
    except Err as err:
        raise_error(err.value)


def load_checkpoint():
    """The state this actor saved before it restarted, or None."""
    data = host.load_checkpoint()
    return None if data is None else decode(data)
