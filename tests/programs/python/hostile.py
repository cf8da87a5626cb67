"""Python attackers for the hostile-guest suite (tests/all/python.rs): each
attack runs as a task of tenant `mallory` while alice's job runs beside it,
and the driver prints how the attack ended, one line each."""

import _socket
import os
import sys

import fabric
from fabric import _msgpack, _values


def outcome(e):
    """An error as `kind detail`, as the Rust attackers print it."""
    if isinstance(e, fabric.LimitExceededError):
        return f"limit-exceeded {e.name} {e.value}"
    if isinstance(e, fabric.TaskFailedError):
        first = e.message.splitlines()[0] if e.message else ""
        return f"{e.kind} {first}"
    if isinstance(e, fabric.NotFoundError):
        return "not-found"
    return f"{type(e).__name__}: {e}"


@fabric.remote
def spin():
    while True:
        pass


@fabric.remote
def hog():
    blocks = []
    while True:
        blocks.append(bytearray(1 << 20))


@fabric.remote
def recurse(n):
    return recurse_here(n)


def recurse_here(n):
    return recurse_here(n + 1) + 1


@fabric.remote
def deep(n):
    sys.setrecursionlimit(100_000_000)
    return recurse_here(n)


@fabric.remote
def nothing():
    return None


@fabric.remote
def read_file(path):
    try:
        with open(path) as f:
            return "read " + str(len(f.read()))
    except Exception as e:
        return f"denied {type(e).__name__}"


@fabric.remote
def list_dir(path):
    try:
        return "listed " + str(len(os.listdir(path)))
    except Exception as e:
        return f"denied {type(e).__name__}"


@fabric.remote
def connect(port):
    # The interpreter has no `socket` module; its C half is the way in.
    try:
        s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
        s.connect(("127.0.0.1", port))
        s.close()
        return "connected"
    except Exception as e:
        return f"denied {type(e).__name__}"


def run(name, ref):
    try:
        print(f"{name}: {fabric.get(ref)}")
    except fabric.FabricError as e:
        print(f"{name}: {outcome(e)}")


def forged_ids():
    # A value holding a reference nobody handed over: the host adopts
    # only what this tenant holds.
    for code, what in ((_values.EXT_OBJECT_REF, "object"), (_values.EXT_ACTOR, "actor")):
        forged = _msgpack.pack(_msgpack.Ext(code, os.urandom(16)))
        try:
            _values.decode(forged)
            print(f"forged {what}: adopted")
        except fabric.FabricError as e:
            print(f"forged {what}: {outcome(e)}")
    found = 0
    mine = fabric.put(1)
    raw = bytearray(mine._id_bytes())
    for i in range(200):
        raw[15] = (raw[15] + 1 + i) % 256
        raw[0] ^= 0x5A
        try:
            _values.decode(_msgpack.pack(_msgpack.Ext(1, bytes(raw))))
            found += 1
        except fabric.NotFoundError:
            pass
    print(f"guessed 200 ids, found {found}")


def steal(object_id, actor_id):
    """Alice's real ids, as she printed them: bytes shaped like her
    reference and her actor's handle adopt nothing. Its own object's id,
    written the same way, does adopt (so the refusal is the tenant check)."""
    mine = fabric.put("mine")
    own = _values.decode(_msgpack.pack(_msgpack.Ext(1, mine._id_bytes())))
    print(f"own object: {fabric.get(own)}")
    for code, what, raw in ((1, "alice's object", object_id), (2, "alice's actor", actor_id)):
        forged = _msgpack.pack(_msgpack.Ext(code, int(raw).to_bytes(16, "big")))
        try:
            _values.decode(forged)
            print(f"{what}: adopted")
        except fabric.FabricError as e:
            print(f"{what}: {outcome(e)}")


def fork_bomb():
    refs = []
    try:
        while True:
            refs.append(spin.remote())
    except fabric.FabricError as e:
        print(f"submitted {len(refs)}, then: {outcome(e)}")
    for r in refs:
        fabric.cancel(r)


def object_flood():
    held = []
    try:
        while True:
            held.append(fabric.put(bytes(1 << 20)))
    except fabric.FabricError as e:
        print(f"stored {len(held)} MiB, then: {outcome(e)}")


@fabric.main
def main(args):
    what = args[0]
    if what == "infinite-loop":
        run("spin", spin.remote())
    elif what == "memory-bomb":
        run("hog", hog.remote())
    elif what == "recursion":
        run("recurse", recurse.remote(0))
        run("deep", deep.remote(0))
    elif what == "forged-ids":
        forged_ids()
    elif what == "steal":
        steal(args[1], args[2])
    elif what == "fork-bomb":
        fork_bomb()
    elif what == "object-flood":
        object_flood()
    elif what == "files":
        run("etc/passwd", read_file.remote("/etc/passwd"))
        run("root", list_dir.remote("/"))
        run("driver etc/passwd", fabric.put(read_file._fn("/etc/passwd")))
    elif what == "network":
        run("connect", connect.remote(int(args[1])))
    else:
        raise ValueError(f"unknown attack {what}")
