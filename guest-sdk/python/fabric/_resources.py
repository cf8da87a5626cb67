"""How the host's resources (`object-ref`, `item-stream`) held by this
instance are given back: when their Python object is freed.

componentize-py's runtime wraps every resource handle it receives in an
object of the generated class and ties the handle's drop to the object with
`weakref.finalize`, a Python class whose construction (a weak reference, an
info object, a registry entry) and whose call on the object's death cost
about a fifth of the CPU of a Python `.remote()` that returns a reference
(`perf`, benches/README.md). The runtime looks `weakref.finalize` up once,
when the application has been imported; `install()`, run by the entry
module at build time, puts `finalize` below in its place.

`finalize` is `weakref.finalize` for everyone else (a subclass: the
application's own finalizers behave as before). For the runtime's calls
for an imported resource (the function is the runtime's `drop_resource`)
it makes nothing per handle: the resource's class has a `__del__` that
drops the handle the object still holds, and an `__exit__` that drops it
now. The runtime's two ways of taking a handle back from an object (moving
it into a call, and the end of a borrow) both delete the object's `handle`
first, so an object whose handle moved drops nothing, and `detach()` has
nothing left to undo.

Only for the resources of the `host` interface, which have no
constructor: a generated constructor takes its handle over from the
object the runtime made, through that object's finalizer (`detach()`),
and leaves that object's `handle` in place, which a class-level `__del__`
would drop. The resources of other interfaces (`wasi:nn`'s tensors,
models and errors) keep `weakref.finalize`, and so do resources this
component exports (the runtime keeps their handle elsewhere) and those
inside a `stream` or `future` (whose writes use what `detach()` returns):
the WIT has neither today.
"""

import weakref

import componentize_py_runtime

#: The runtime's drop of a resource handle: `drop(drop_function, handle)`.
_DROP = componentize_py_runtime.drop_resource

#: The bindings' module of the host's resources: only its classes are
#: adopted.
_IMPORTED = "wit_world.imports.host"

#: Each adopted resource class's drop function (learned from the runtime's
#: first call for it in an instance), or None before that.
_DROPS = {}


class _Detached:
    """What the runtime keeps as an object's `finalizer`: the object's
    class drops the handle, so there is nothing to detach."""

    __slots__ = ()

    def detach(self):
        return None


_NOTHING = _Detached()


def _release(self):
    """`__del__` of a resource class: drops the handle the object still
    holds (none once it moved into a call or was dropped)."""
    handle = self.handle
    if handle is not None:
        self.handle = None
        _DROP(_DROPS[type(self)], handle)


def _exit(self, exc_type=None, exc_value=None, traceback=None):
    """`__exit__` of a resource class: drops the handle now."""
    _release(self)


def _adopt(cls):
    """Makes `cls`, a resource class of the generated bindings, drop its
    handles itself."""
    # A class attribute, so an object whose handle the runtime deleted
    # reads None rather than raising.
    cls.handle = None
    cls.__del__ = _release
    cls.__exit__ = _exit
    _DROPS.setdefault(cls, None)


class finalize(weakref.finalize):
    __doc__ = weakref.finalize.__doc__
    __slots__ = ()

    def __new__(cls, obj, func, /, *args, **kwargs):
        if func is _DROP and len(args) == 2 and not kwargs:
            kind = type(obj)
            if _DROPS.get(kind) is None:  # this instance's first handle of `kind`
                if kind not in _DROPS:
                    if kind.__module__ != _IMPORTED:
                        return super().__new__(cls)
                    _adopt(kind)  # a resource the WIT gained since `install`
                _DROPS[kind] = args[0]
            return _NOTHING
        return super().__new__(cls)


def install():
    """Adopts the host's resource classes and puts `finalize` in
    `weakref`'s place, for the runtime to find. Run at build time, so the
    classes an instance starts with are already adopted."""
    from wit_world.imports import host

    for cls in (host.ObjectRef, host.ItemStream):
        _adopt(cls)
    weakref.finalize = finalize
