"""Values as they cross to the host: MessagePack with the references nested
inside them collected on the way out and adopted, in one host call, on the
way in."""

from wit_world.imports import host, types
from componentize_py_types import Err

from . import _msgpack
from ._wit import raise_error

#: MessagePack extension type of a nested object reference.
EXT_OBJECT_REF = 1
#: MessagePack extension type of a nested actor handle.
EXT_ACTOR = 2


def id_bytes(wit_id):
    return wit_id.hi.to_bytes(8, "big") + wit_id.lo.to_bytes(8, "big")


def wit_id(raw):
    if len(raw) != 16:
        raise _msgpack.DecodeError("an id must be 16 bytes")
    return types.Id(hi=int.from_bytes(raw[:8], "big"), lo=int.from_bytes(raw[8:], "big"))


class ObjectRef:
    """A reference to an object in the store (Ray's `ObjectRef`). The object
    lives while a reference to it does, here or anywhere in the cluster."""

    __slots__ = ("_handle", "_raw")

    def __init__(self, handle, raw=None):
        self._handle = handle
        self._raw = raw

    def _id_bytes(self):
        if self._raw is None:
            self._raw = id_bytes(self._handle.id())
        return self._raw

    def hex(self):
        """The object's id, in hex."""
        return self._id_bytes().hex()

    def __eq__(self, other):
        return isinstance(other, ObjectRef) and self._id_bytes() == other._id_bytes()

    def __hash__(self):
        return hash(self._id_bytes())

    def __repr__(self):
        return f"ObjectRef({self.hex()})"

    def __await__(self):
        """`await ref` in an `async def`: the object's value. A concurrent
        actor's other calls run while it waits."""
        from . import _aio, _api

        return _aio.await_ref(self, _api.get).__await__()


class Encoded:
    __slots__ = ("data", "nested")

    def __init__(self, data, nested):
        self.data = data
        self.nested = nested


#: Types that hold no references: encoded without looking for any.
_PLAIN = frozenset((bytes, str, int, float, bool, type(None)))


def encode(value):
    """`value` as MessagePack, and the host handles of the references in it."""
    t = type(value)
    if t is bytes:  # the most common result: no walk, no closure
        return Encoded(_msgpack.bin_header(len(value)) + value, [])
    if t in _PLAIN:
        return Encoded(_msgpack.pack(value), [])
    nested = []

    def ext_of(obj):
        ref = getattr(obj, "_fabric_ref", None)
        if isinstance(obj, ObjectRef):
            nested.append(obj._handle)
            return (EXT_OBJECT_REF, obj._id_bytes())
        if ref is not None:
            nested.append(ref._handle)
            return (EXT_ACTOR, ref._id_bytes())
        return None

    return Encoded(_msgpack.pack(value, ext_of), nested)


#: The handle class lives with the API, which imports this module: set by
#: `_api` once it is loaded.
ActorHandle = None


def decode(data):
    """The value `data` encodes, with the references in it adopted."""
    n = len(data)
    if n and data[0] == 0xC4 and n >= 2 and data[1] == n - 2:
        return data[2:]  # a short `bin`, the most common result
    if n == 1 and data[0] < 0x80:
        return data[0]
    pending = []

    def ext_hook(code, raw):
        if code == EXT_OBJECT_REF:
            r = ObjectRef(None, raw)
            pending.append(r)
            return r
        if code == EXT_ACTOR:
            r = ObjectRef(None, raw)
            pending.append(r)
            return ActorHandle(r)
        return _msgpack.Ext(code, raw)

    value = _msgpack.unpack(data, ext_hook)
    if pending:
        try:
            handles = host.adopt_many([wit_id(r._raw) for r in pending])
        except Err as e:
            raise_error(e.value)
        for r, h in zip(pending, handles):
            r._handle = h
    return value
