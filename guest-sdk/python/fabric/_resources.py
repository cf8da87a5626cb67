"""How the host's resources (`object-ref`, `item-stream`) held by this
instance are given back: when their Python object is freed.

componentize-py's runtime wraps every resource handle it receives in an
object of the generated class and ties the handle's drop to the object with
`weakref.finalize`, a Python class whose construction (a weak reference, an
info object, a registry entry) and whose call on the object's death cost
about a fifth of the CPU of a Python `.remote()` that returns a reference
(`perf`, benches/README.md). The runtime looks `weakref.finalize` up once,
when the application has been imported; `install()`, the last thing the
entry module does, puts `finalize` below in its place.

`finalize` is `weakref.finalize` for everyone else. For the runtime's own
calls (the function is the runtime's `drop_resource`) it makes nothing per
handle: the resource's class gets a `__del__` that drops the handle the
object still holds, and `__exit__` that drops it now. The runtime's two
ways of taking a handle back from an object (moving it into a call, and
the end of a borrow) both delete the object's `handle` first, so an object
whose handle moved drops nothing; `detach()` has nothing left to undo.
"""

import weakref

import componentize_py_runtime

#: The runtime's drop of a resource handle: `drop(drop_function, handle)`.
_DROP = componentize_py_runtime.drop_resource


class _Detached:
    """What the runtime keeps as an object's `finalizer`: the object's
    class drops the handle, so there is nothing to detach."""

    __slots__ = ()

    def detach(self):
        return None

    @property
    def alive(self):
        return False


_NOTHING = _Detached()


def _release(self):
    """`__del__` of a resource class: drops the handle the object still
    holds (none once it moved into a call or was dropped)."""
    handle = self.handle
    if handle is not None:
        self.handle = None
        _DROP(self._fabric_drop, handle)


def _exit(self, exc_type=None, exc_value=None, traceback=None):
    """`__exit__` of a resource class: drops the handle now."""
    _release(self)


def _adopt(cls, drop):
    """Makes `cls` (a resource class of the generated bindings) drop its
    handles itself, with the runtime's drop function `drop`."""
    cls._fabric_drop = drop
    # A class attribute, so an object whose handle the runtime deleted
    # reads None rather than raising.
    cls.handle = None
    cls.__del__ = _release
    cls.__exit__ = _exit
    _ADOPTED[cls] = drop


#: Resource classes adopted so far, with their drop functions.
_ADOPTED = {}


class finalize(weakref.finalize):
    __doc__ = weakref.finalize.__doc__
    __slots__ = ()

    def __new__(cls, obj, func, /, *args, **kwargs):
        if func is _DROP and len(args) == 2 and not kwargs:
            kind = type(obj)
            if _ADOPTED.get(kind) != args[0]:
                _adopt(kind, args[0])
            return _NOTHING
        return super().__new__(cls)


def install():
    """Puts `finalize` in `weakref`'s place, for the runtime to find."""
    weakref.finalize = finalize
