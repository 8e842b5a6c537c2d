"""How one serialized object lies in the object store: header, data, buffers.

A value is serialized with pickle protocol 5 into ``data`` (the pickle stream)
plus a list of out-of-band ``buffers`` (the raw memory of numpy arrays and
other PickleBuffer objects). The object store keeps them side by side in ONE
block, so a put is one allocation and one memcpy per part, and a get hands out
views of the buffers without copying anything:

    offset 0   header: magic, number of buffers, data length,
               then (offset, length) of every buffer
    aligned    data (the pickle stream)
    aligned    buffer 0
    aligned    buffer 1 ...

Every part starts on a 64-byte boundary (a cache line), so the arrays numpy
rebuilds on top of the buffers are aligned as if numpy had allocated them.
Offsets in the header are relative to the start of the block.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pickle import PickleBuffer

ALIGN = 64
MAGIC = b"RLO1"  # "raylab object, layout 1"
_HEAD = struct.Struct("<4sIQ")  # magic, number of buffers, data length
_PART = struct.Struct("<QQ")    # one buffer: offset, length


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) & ~(ALIGN - 1)


def raw_bytes(buf) -> memoryview:
    """A flat byte view of one out-of-band buffer, without copying it.

    ``PickleBuffer.raw()`` works for C- and Fortran-contiguous memory alike;
    a non-contiguous buffer raises BufferError (pickle never makes those
    out of band: numpy pickles non-contiguous arrays in band).
    """
    if not isinstance(buf, PickleBuffer):
        buf = PickleBuffer(buf)
    return buf.raw()


@dataclass
class Layout:
    """Where each part of one object goes inside its block (sizes known, nothing written)."""
    header: bytes
    data: object                # bytes-like: the pickle stream
    data_offset: int
    buffers: list               # flat byte views (memoryview) of the out-of-band buffers
    buffer_offsets: list
    size: int                   # bytes the block must have

    @classmethod
    def of(cls, data, buffers=()) -> Layout:
        views = [raw_bytes(b) for b in buffers]
        header_len = _HEAD.size + _PART.size * len(views)
        data_offset = _aligned(header_len)
        pos = data_offset + len(data)
        offsets = []
        for v in views:
            pos = _aligned(pos)
            offsets.append(pos)
            pos += v.nbytes
        parts = b"".join(_PART.pack(o, v.nbytes) for o, v in zip(offsets, views))
        header = _HEAD.pack(MAGIC, len(views), len(data)) + parts
        return cls(header, data, data_offset, views, offsets, pos)


def pack_into(dest: memoryview, layout: Layout) -> None:
    """Write the object into ``dest`` (a writable byte view of its block).

    One slice assignment (one memcpy) per part; never a joined copy. A large
    buffer is copied by several threads at once (see ``copy_bytes``).
    """
    if dest.nbytes < layout.size:
        raise ValueError(f"block of {dest.nbytes} bytes is too small for {layout.size}")
    dest[:len(layout.header)] = layout.header
    dest[layout.data_offset:layout.data_offset + len(layout.data)] = layout.data
    for off, view in zip(layout.buffer_offsets, layout.buffers):
        copy_bytes(dest[off:off + view.nbytes], view)


PARALLEL_COPY_MIN = 16 << 20   # below this, one memcpy is faster than waking threads
COPY_THREADS = 2               # like Ray's plasma client (memcopy_threads): one core
                               # cannot saturate memory bandwidth, two come close
_pool = None


def copy_bytes(dest: memoryview, src: memoryview) -> None:
    """``dest[:] = src``; for a large buffer, ``COPY_THREADS`` slices copied at once.

    numpy's copy releases the GIL, so the threads really copy in parallel; without
    numpy (then the buffers are not arrays anyway) it is a single copy.
    """
    n = src.nbytes
    if n < PARALLEL_COPY_MIN or COPY_THREADS < 2:
        dest[:] = src
        return
    try:
        import numpy as np
    except ImportError:
        dest[:] = src
        return
    global _pool
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor
        _pool = ThreadPoolExecutor(COPY_THREADS - 1, thread_name_prefix="raylab-memcpy")
    d, s = np.frombuffer(dest, np.uint8), np.frombuffer(src, np.uint8)
    step = _aligned(n // COPY_THREADS)
    cuts = [(i, min(i + step, n)) for i in range(0, n, step)]
    others = [_pool.submit(np.copyto, d[a:b], s[a:b]) for a, b in cuts[1:]]
    a, b = cuts[0]
    np.copyto(d[a:b], s[a:b])           # this thread copies the first slice itself
    for f in others:
        f.result()


def pack(data, buffers=()) -> bytearray:
    """The whole object as one bytearray (for tests and tools; puts use pack_into)."""
    layout = Layout.of(data, buffers)
    out = bytearray(layout.size)
    pack_into(memoryview(out), layout)
    return out


def unpack(block) -> tuple[memoryview, list[memoryview]]:
    """``(data, buffers)`` as views into ``block``: nothing is copied.

    The views keep ``block`` (and whatever it views) alive; if ``block`` is
    read-only, so are they, and so are the numpy arrays pickle builds on them.
    """
    view = block if isinstance(block, memoryview) else memoryview(block)
    if view.nbytes < _HEAD.size:
        raise ValueError("not a raylab object: block shorter than its header")
    magic, nbuf, data_len = _HEAD.unpack_from(view, 0)
    if magic != MAGIC:
        raise ValueError(f"not a raylab object: bad magic {bytes(magic)!r}")
    data_offset = _aligned(_HEAD.size + _PART.size * nbuf)
    _check(view, data_offset, data_len)
    buffers = []
    for i in range(nbuf):
        off, length = _PART.unpack_from(view, _HEAD.size + _PART.size * i)
        _check(view, off, length)
        buffers.append(view[off:off + length])
    return view[data_offset:data_offset + data_len], buffers


def _check(view: memoryview, off: int, length: int) -> None:
    if off + length > view.nbytes:
        raise ValueError(f"corrupt object: part [{off}, {off + length}) "
                         f"outside the block of {view.nbytes} bytes")
