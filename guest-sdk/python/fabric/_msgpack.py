"""MessagePack, as the Rust SDK writes it (rmp-serde with named fields).

The fabric Python SDK ships its own codec: the `msgpack` package on PyPI is
a native extension with no WebAssembly build, and fabric never downloads.
Only what values need is here: nil, booleans, integers (64-bit), floats
(written as float 64), strings, binary, arrays, maps, and extension types
(object references are type 1, actor handles type 2; see `fabric.wit`).
"""

import struct

_pack_d = struct.Struct(">d").pack
_unpack = struct.unpack_from


class Ext:
    """An extension value this codec does not interpret."""

    __slots__ = ("code", "data")

    def __init__(self, code, data):
        self.code = code
        self.data = data

    def __eq__(self, other):
        return isinstance(other, Ext) and (self.code, self.data) == (other.code, other.data)

    def __repr__(self):
        return f"Ext({self.code}, {self.data!r})"


def pack(value, ext_of=None):
    """Encodes `value`. `ext_of(obj)` returns `(code, bytes)` for an object
    the codec does not know (an object reference, say), or None."""
    out = bytearray()
    _pack_into(out, value, ext_of)
    return bytes(out)


def _pack_into(out, v, ext_of):
    if v is None:
        out.append(0xC0)
    elif v is True:
        out.append(0xC3)
    elif v is False:
        out.append(0xC2)
    elif type(v) is int:
        _pack_int(out, v)
    elif type(v) is float:
        out.append(0xCB)
        out += _pack_d(v)
    elif type(v) is str:
        b = v.encode("utf-8")
        n = len(b)
        if n < 32:
            out.append(0xA0 | n)
        elif n < 0x100:
            out += bytes((0xD9, n))
        elif n < 0x10000:
            out.append(0xDA)
            out += n.to_bytes(2, "big")
        else:
            out.append(0xDB)
            out += n.to_bytes(4, "big")
        out += b
    elif isinstance(v, (bytes, bytearray, memoryview)):
        if isinstance(v, memoryview):
            v = v.cast("B") if v.format != "B" or v.ndim != 1 else v
        out += bin_header(len(v))
        out += v
    elif isinstance(v, (list, tuple)):
        _pack_len(out, len(v), 0x90, 0xDC)
        for item in v:
            _pack_into(out, item, ext_of)
    elif isinstance(v, dict):
        _pack_len(out, len(v), 0x80, 0xDE)
        for k, item in v.items():
            _pack_into(out, k, ext_of)
            _pack_into(out, item, ext_of)
    elif isinstance(v, Ext):
        _pack_ext(out, v.code, v.data)
    elif isinstance(v, str):
        _pack_into(out, str.__str__(v), ext_of)
    elif isinstance(v, bool):
        out.append(0xC3 if v else 0xC2)
    elif isinstance(v, int):
        _pack_int(out, int(v))
    elif isinstance(v, float):
        out.append(0xCB)
        out += _pack_d(float(v))
    else:
        ext = ext_of(v) if ext_of is not None else None
        if ext is None:
            raise TypeError(f"cannot encode a value of type {type(v).__name__} as MessagePack")
        _pack_ext(out, ext[0], ext[1])


def _pack_int(out, v):
    if 0 <= v < 0x80:
        out.append(v)
    elif -32 <= v < 0:
        out.append(v & 0xFF)
    elif 0 <= v < 0x100:
        out += bytes((0xCC, v))
    elif 0 <= v < 0x10000:
        out.append(0xCD)
        out += v.to_bytes(2, "big")
    elif 0 <= v < 0x100000000:
        out.append(0xCE)
        out += v.to_bytes(4, "big")
    elif 0 <= v < 0x10000000000000000:
        out.append(0xCF)
        out += v.to_bytes(8, "big")
    elif -0x80 <= v < 0:
        out.append(0xD0)
        out += v.to_bytes(1, "big", signed=True)
    elif -0x8000 <= v < 0:
        out.append(0xD1)
        out += v.to_bytes(2, "big", signed=True)
    elif -0x80000000 <= v < 0:
        out.append(0xD2)
        out += v.to_bytes(4, "big", signed=True)
    elif -0x8000000000000000 <= v < 0:
        out.append(0xD3)
        out += v.to_bytes(8, "big", signed=True)
    else:
        raise OverflowError(f"{v} does not fit in 64 bits")


def _pack_len(out, n, fix, marker16):
    if n < 16:
        out.append(fix | n)
    elif n < 0x10000:
        out.append(marker16)
        out += n.to_bytes(2, "big")
    else:
        out.append(marker16 + 1)
        out += n.to_bytes(4, "big")


def _pack_ext(out, code, data):
    n = len(data)
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}.get(n)
    if fixed is not None:
        out.append(fixed)
    elif n < 0x100:
        out += bytes((0xC7, n))
    elif n < 0x10000:
        out.append(0xC8)
        out += n.to_bytes(2, "big")
    else:
        out.append(0xC9)
        out += n.to_bytes(4, "big")
    out += code.to_bytes(1, "big", signed=True)
    out += data


def bin_header(n):
    """The MessagePack `bin` header for `n` bytes of data."""
    if n < 0x100:
        return bytes((0xC4, n))
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    return b"\xc6" + n.to_bytes(4, "big")


class DecodeError(ValueError):
    pass


def unpack(data, ext_hook=None):
    """Decodes one value that fills `data`. `ext_hook(code, bytes)` turns an
    extension value into an object (default: `Ext`)."""
    view = memoryview(data)
    try:
        value, end = _unpack_at(view, 0, ext_hook)
    except (IndexError, struct.error):
        raise DecodeError("the value ends early") from None
    if end != len(view):
        raise DecodeError(f"{len(view) - end} bytes follow the value")
    return value


def _need(view, at, n):
    if at + n > len(view):
        raise DecodeError("the value ends early")


def _unpack_at(view, at, ext_hook):
    b = view[at]
    at += 1
    if b < 0x80:
        return b, at
    if b >= 0xE0:
        return b - 0x100, at
    if 0x80 <= b <= 0x8F:
        return _unpack_map(view, at, b & 0x0F, ext_hook)
    if 0x90 <= b <= 0x9F:
        return _unpack_array(view, at, b & 0x0F, ext_hook)
    if 0xA0 <= b <= 0xBF:
        return _str(view, at, b & 0x1F)
    if b == 0xC0:
        return None, at
    if b == 0xC2:
        return False, at
    if b == 0xC3:
        return True, at
    if b in (0xC4, 0xC5, 0xC6):
        size = 1 << (b - 0xC4)
        _need(view, at, size)
        n = int.from_bytes(view[at : at + size], "big")
        at += size
        _need(view, at, n)
        return bytes(view[at : at + n]), at + n
    if b in (0xC7, 0xC8, 0xC9):
        size = 1 << (b - 0xC7)
        _need(view, at, size)
        n = int.from_bytes(view[at : at + size], "big")
        return _ext(view, at + size, n, ext_hook)
    if b == 0xCA:
        return _unpack(">f", view, at)[0], at + 4
    if b == 0xCB:
        return _unpack(">d", view, at)[0], at + 8
    if 0xCC <= b <= 0xCF:
        size = 1 << (b - 0xCC)
        _need(view, at, size)
        return int.from_bytes(view[at : at + size], "big"), at + size
    if 0xD0 <= b <= 0xD3:
        size = 1 << (b - 0xD0)
        _need(view, at, size)
        return int.from_bytes(view[at : at + size], "big", signed=True), at + size
    if 0xD4 <= b <= 0xD8:
        return _ext(view, at, 1 << (b - 0xD4), ext_hook)
    if b in (0xD9, 0xDA, 0xDB):
        size = 1 << (b - 0xD9)
        _need(view, at, size)
        n = int.from_bytes(view[at : at + size], "big")
        return _str(view, at + size, n)
    if b in (0xDC, 0xDD):
        size = 2 if b == 0xDC else 4
        _need(view, at, size)
        n = int.from_bytes(view[at : at + size], "big")
        return _unpack_array(view, at + size, n, ext_hook)
    if b in (0xDE, 0xDF):
        size = 2 if b == 0xDE else 4
        _need(view, at, size)
        n = int.from_bytes(view[at : at + size], "big")
        return _unpack_map(view, at + size, n, ext_hook)
    raise DecodeError(f"byte 0x{b:02x} does not start a MessagePack value")


def _str(view, at, n):
    _need(view, at, n)
    return str(view[at : at + n], "utf-8"), at + n


def _ext(view, at, n, ext_hook):
    _need(view, at, 1 + n)
    code = int.from_bytes(view[at : at + 1], "big", signed=True)
    data = bytes(view[at + 1 : at + 1 + n])
    value = ext_hook(code, data) if ext_hook is not None else Ext(code, data)
    return value, at + 1 + n


def _unpack_array(view, at, n, ext_hook):
    # Every element takes at least a byte: a count past the end is a lie.
    _need(view, at, n)
    items = []
    for _ in range(n):
        item, at = _unpack_at(view, at, ext_hook)
        items.append(item)
    return items, at


def _unpack_map(view, at, n, ext_hook):
    _need(view, at, 2 * n)
    out = {}
    for _ in range(n):
        k, at = _unpack_at(view, at, ext_hook)
        if isinstance(k, list):
            k = tuple(k)
        v, at = _unpack_at(view, at, ext_hook)
        out[k] = v
    return out, at
