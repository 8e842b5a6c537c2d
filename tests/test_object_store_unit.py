"""Unit tests of the object store's parts: allocator, layout, zero-copy reads, spill
files (and the store core's effects carried out for real), and a second process
reading the same arena through a passed file descriptor. The store core's event
sequences are in test_store_core_unit.py."""
from __future__ import annotations

import gc
import mmap
import os
import pickle
import random
import socket
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import raylab
from raylab.object_store import (PAGE_SIZE, Allocator, DeleteFile, Evict, Layout,
                                 ObjectStoreCore, Restore, Spill, StoreClient, create_arena,
                                 pack, pack_into, recv_fd, send_fd, unpack)
from raylab.object_store import spill as spill_files
from raylab.object_store.layout import ALIGN

P = PAGE_SIZE


def dumps(value):
    buffers = []
    data = pickle.dumps(value, 5, buffer_callback=buffers.append)
    return data, buffers


@pytest.fixture
def client():
    c = StoreClient(create_arena(64 * P * 16), own_fd=True)
    yield c
    gc.collect()
    c.close()


# -- allocator -----------------------------------------------------------------

def test_alloc_is_page_aligned_and_rounds_up():
    a = Allocator(10 * P)
    offs = [a.alloc(1), a.alloc(P), a.alloc(P + 1), a.alloc(0)]
    assert offs == [0, P, 2 * P, 4 * P]
    assert all(o % P == 0 for o in offs)
    assert [a.size_of(o) for o in offs] == [P, P, 2 * P, P]
    assert a.used == 5 * P


def test_alloc_returns_none_when_nothing_fits():
    a = Allocator(4 * P)
    assert a.alloc(3 * P) == 0
    assert a.alloc(2 * P) is None
    assert a.alloc(P) == 3 * P
    assert a.alloc(1) is None
    with pytest.raises(ValueError):
        a.alloc(-1)


def test_free_coalesces_with_both_neighbours():
    a = Allocator(8 * P)
    x, y, z = a.alloc(P), a.alloc(P), a.alloc(P)
    a.free(x)
    a.free(z)  # z merges with the tail
    assert a.free_blocks() == [(0, P), (2 * P, 6 * P)]
    assert a.free(y) == P  # reports the block's own size, merges both sides
    assert a.free_blocks() == [(0, 8 * P)]
    assert a.used == 0
    with pytest.raises(KeyError):
        a.free(y)


def test_first_fit_reuses_low_recently_freed_block():
    a = Allocator(16 * P)
    blocks = [a.alloc(2 * P) for _ in range(4)]
    a.free(blocks[1])
    assert a.alloc(P) == blocks[1]  # the low hole, not the untouched tail
    assert a.alloc(P) == blocks[1] + P
    assert a.alloc(P) == 8 * P


def test_fragmentation_stats():
    a = Allocator(8 * P)
    offs = [a.alloc(P) for _ in range(8)]
    for o in offs[::2]:
        a.free(o)
    st = a.stats()
    assert (st.used, st.free, st.largest_free, st.free_blocks) == (4 * P, 4 * P, P, 4)
    assert st.fragmentation == pytest.approx(0.75)
    assert not a.can_alloc(2 * P)
    for o in offs[1::2]:
        a.free(o)
    assert a.stats().fragmentation == 0.0 and a.stats().largest_free == 8 * P


def test_copy_is_independent():
    a = Allocator(4 * P)
    x = a.alloc(P)
    b = a.copy()
    b.free(x)
    assert a.size_of(x) == P and b.used == 0


def test_random_alloc_free_keeps_the_free_list_sound():
    rng = random.Random(7)
    a = Allocator(64 * P)
    live = []
    for _ in range(2000):
        if live and rng.random() < 0.45:
            a.free(live.pop(rng.randrange(len(live))))
        else:
            off = a.alloc(rng.randrange(0, 6 * P))
            if off is not None:
                live.append(off)
        blocks = a.free_blocks()
        # Sorted, never overlapping, never touching (touching blocks are merged).
        assert all(o1 + s1 < o2 for (o1, s1), (o2, _) in zip(blocks, blocks[1:]))
        assert a.used + sum(s for _, s in blocks) == a.capacity
    for off in live:
        a.free(off)
    assert a.free_blocks() == [(0, 64 * P)]


# -- layout ----------------------------------------------------------------------

def test_pack_unpack_plain_bytes():
    data, buffers = dumps({"k": b"x" * 1000})
    assert buffers == []
    got_data, got_buffers = unpack(pack(data, buffers))
    assert bytes(got_data) == data and got_buffers == []


def test_pack_unpack_numpy_arrays_aligned():
    value = {"a": np.arange(1000, dtype=np.int64), "b": np.ones((3, 5), np.float32),
             "f": np.asfortranarray(np.arange(12.0).reshape(3, 4)), "empty": np.zeros(0)}
    data, buffers = dumps(value)
    assert len(buffers) == 4
    layout = Layout.of(data, buffers)
    assert all(off % ALIGN == 0 for off in layout.buffer_offsets + [layout.data_offset])
    block = pack(data, buffers)
    assert len(block) == layout.size
    d, bufs = unpack(block)
    got = pickle.loads(d, buffers=bufs)
    for k, v in value.items():
        assert np.array_equal(got[k], v) and got[k].dtype == v.dtype
    assert got["f"].flags.f_contiguous


def test_zero_length_buffers():
    data, buffers = dumps([np.zeros(0), np.zeros(0, np.uint8), np.arange(3)])
    d, bufs = unpack(pack(data, buffers))
    assert [b.nbytes for b in bufs] == [0, 0, 24]
    got = pickle.loads(d, buffers=bufs)
    assert got[0].size == 0 and got[2].tolist() == [0, 1, 2]


def test_unpack_rejects_garbage_and_pack_into_checks_size():
    with pytest.raises(ValueError, match="magic"):
        unpack(b"x" * 100)
    layout = Layout.of(*dumps(np.arange(100)))
    with pytest.raises(ValueError, match="too small"):
        pack_into(memoryview(bytearray(layout.size - 1)), layout)


# -- zero-copy reads and their lifetime -----------------------------------------------

def put(client, offset, value):
    return client.write(offset, *dumps(value))


def test_read_is_zero_copy_and_read_only(client):
    size = put(client, 0, np.arange(100_000, dtype=np.int64))
    released = []
    arr = client.read_value(0, size, lambda: released.append(1))
    assert arr[5] == 5 and not arr.flags.writeable
    assert arr.ctypes.data % ALIGN == 0  # as aligned as numpy's own allocations
    with pytest.raises(ValueError):
        arr[0] = 1
    with pytest.raises(ValueError):
        arr.setflags(write=True)
    # Zero-copy: a change in the arena shows through the array.
    data, buffers = unpack(client.view(0, size))
    np.frombuffer(buffers[0], dtype=np.int64)[5] = -5
    assert arr[5] == -5
    del data, buffers, arr
    assert released == [1]


def test_array_keeps_mapping_and_release_fires_once(client):
    size = put(client, 0, np.arange(1000.0))
    released = []
    arr = client.read_value(0, size, lambda: released.append("x"))
    # The array's base chain ends in the read-only mapping of this object.
    base = arr
    while getattr(base, "base", None) is not None:
        base = base.base
    assert isinstance(base, memoryview) and base.readonly
    assert isinstance(base.obj, mmap.mmap)  # this object's own read-only mapping
    gc.collect()
    assert released == []
    part = arr[10:20]  # a view of the array keeps it too
    del arr
    gc.collect()
    assert released == [] and part[0] == 10.0
    del part, base
    assert released == ["x"]
    gc.collect()
    assert released == ["x"]


def test_container_of_arrays_released_after_the_last(client):
    size = put(client, 0, {"a": np.arange(10), "b": np.arange(20)})
    released = []
    value = client.read_value(0, size, lambda: released.append(1))
    a, b = value["a"], value["b"]
    del value
    del a
    assert released == []
    del b
    assert released == [1]


def test_value_without_buffers_releases_at_once(client):
    size = put(client, 0, b"y" * 200_000)
    released = []
    assert client.read_value(0, size, lambda: released.append(1)) == b"y" * 200_000
    assert released == [1]


def test_raw_read_views_hold_the_pin(client):
    size = put(client, P, np.arange(50))
    released = []
    data, buffers = client.read(P, size, lambda: released.append(1))
    assert data.readonly and all(b.readonly for b in buffers)
    value = pickle.loads(data, buffers=buffers)
    del data, buffers
    assert released == []
    del value
    assert released == [1]


def test_out_of_arena_block_is_refused(client):
    with pytest.raises(ValueError, match="outside the arena"):
        client.read(client.capacity - P, 2 * P, lambda: None)


def oid(n):
    return b"obj-%02d" % n


# -- spill files, and the effects carried out for real ----------------------------------

def test_spill_files(tmp_path):
    d = spill_files.make_spill_dir(str(tmp_path / "spill"))
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    path = spill_files.spill_path(d, b"\x01\x02")
    spill_files.write_spill_file(path, memoryview(b"abc" * 1000))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    out = bytearray(3000)
    spill_files.read_spill_file(path, memoryview(out))
    assert out == b"abc" * 1000
    with pytest.raises(OSError, match="expected"):
        spill_files.read_spill_file(path, memoryview(bytearray(10)))
    spill_files.delete_spill_file(path)
    spill_files.delete_spill_file(path)
    spill_files.remove_spill_dir(d)
    assert not os.path.exists(d)


def carry_out(core, client, effects):
    """A tiny shell: do what the core asks, feed back the IO results."""
    ready = []
    while effects:
        eff = effects.pop(0)
        if isinstance(eff, Spill):
            spill_files.write_spill_file(eff.path, client.view(eff.offset, eff.size))
            effects += core.spilled(eff.object_id)
        elif isinstance(eff, Restore):
            spill_files.read_spill_file(eff.path, client.view(eff.offset, eff.size))
            effects += core.restored(eff.object_id)
        elif isinstance(eff, DeleteFile):
            spill_files.delete_spill_file(eff.path)
        elif not isinstance(eff, Evict):  # an Evict needs no IO
            ready.append(eff)
    return ready


def test_spill_and_restore_round_trip_with_real_memory(tmp_path):
    spill_dir = spill_files.make_spill_dir(str(tmp_path / "spill"))
    client = StoreClient(create_arena(64 * P), own_fd=True)
    core = ObjectStoreCore(client.capacity, spill_dir)
    arrays = {n: np.full(25 * P // 8, n, dtype=np.int64) for n in range(4)}  # 25 pages each
    for n, arr in arrays.items():
        layout = Layout.of(*dumps(arr))
        (created,) = carry_out(core, client, core.create(oid(n), layout.size, "o", client="w"))
        client.write_layout(created.offset, layout)
        core.seal(oid(n))
    assert sorted(os.listdir(spill_dir)) == [oid(0).hex(), oid(1).hex()]
    for n, arr in arrays.items():  # every get restores transparently
        (ready,) = carry_out(core, client, core.get(oid(n), "r"))
        got = client.read_value(ready.offset, ready.size, lambda: None)
        assert np.array_equal(got, arr)
        del got
        core.release(oid(n), "r")
    for n in arrays:
        carry_out(core, client, core.delete(oid(n)))
    assert os.listdir(spill_dir) == [] and core.usage().used == 0
    gc.collect()
    client.close()


# -- two processes, one arena ------------------------------------------------------------

CHILD = textwrap.dedent("""
    import pickle, socket, sys
    import numpy as np
    from raylab.object_store import StoreClient, recv_fd
    sock = socket.socket(fileno=int(sys.argv[1]))
    fd, msg = recv_fd(sock)
    offset, size = map(int, msg.decode().split())
    client = StoreClient(fd)
    released = []
    arr = client.read_value(offset, size, lambda: released.append(1))
    total = int(arr.sum())
    writeable = arr.flags.writeable
    del arr
    # Answer through the arena too: write a result object the parent reads.
    n = client.write(0, *[pickle.dumps((total, writeable, released), 5), []])
    sock.sendall(b"%d" % n)
""")


def test_child_process_reads_through_passed_fd():
    fd = create_arena(512 * P)
    client = StoreClient(fd)
    arr = np.arange(100_000, dtype=np.int64)
    offset = 64 * P
    size = client.write(offset, *dumps(arr))
    parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    root = os.path.dirname(os.path.dirname(os.path.abspath(raylab.__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (root, os.environ.get("PYTHONPATH")) if p))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(child_sock.fileno())],
                             pass_fds=(child_sock.fileno(),), env=env)
    try:
        child_sock.close()
        send_fd(parent_sock, fd, b"%d %d" % (offset, size))
        reply_size = int(parent_sock.recv(64))  # blocks until the child answers
        assert child.wait(timeout=60) == 0
        total, writeable, released = client.read_value(0, reply_size, lambda: None)
        assert total == int(arr.sum()) and writeable is False and released == [1]
    finally:
        parent_sock.close()
        if child.poll() is None:
            child.kill()
            child.wait()
        client.close()
        os.close(fd)


def test_recv_fd_without_fd_is_an_error():
    a, b = socket.socketpair()
    with a, b:
        a.sendall(b"plain")
        with pytest.raises(ConnectionError, match="file descriptor"):
            recv_fd(b)
