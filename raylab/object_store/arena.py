"""The shared-memory arena of one node's object store, seen from a process.

The raylet creates the arena once, when the node starts: an anonymous memory
file (``memfd_create``) of ``object_store_memory`` bytes. Anonymous means no
name in ``/dev/shm``: the memory belongs to whoever holds the file descriptor
or a mapping, and disappears with the last of them, so a crashed node leaves
nothing behind. Pages are allocated lazily, on first write.

The raylet hands the descriptor to the driver and workers of its node over a
Unix socket (``SCM_RIGHTS``: the kernel copies the open file into the
receiver). Each process maps the WHOLE arena once and keeps it: writing into
pages this process has already touched runs at memcpy speed (~10 GB/s), while
fresh pages cost a page fault each (~1 GB/s). That is why Ray's ``put`` is fast.

Reads are different: a reader maps just the object, read-only; the numpy
arrays a ``get`` returns point into that mapping, and the hardware enforces
read-only. While they live, the object stays pinned in the store (never
spilled, evicted or reused). Mapping is cheap (no page is touched, ~15 us for
100 MB); a process's plasma client keeps one mapping per pinned object, so
gets of the same object share memory and its pages stay mapped between reads.
"""
from __future__ import annotations

import mmap
import os
import pickle
import socket
import weakref

from raylab.object_store.layout import Layout, pack_into, unpack


def create_arena(capacity: int, name: str = "raylab-object-store") -> int:
    """A new anonymous shared-memory file of ``capacity`` bytes; returns its fd.

    ``name`` only shows in ``/proc/<pid>/fd`` (as ``/memfd:<name> (deleted)``).
    The fd is close-on-exec: pass it on explicitly (``send_fd``, or ``pass_fds``).
    """
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    try:
        os.ftruncate(fd, capacity)  # sets the size; allocates no memory yet
    except BaseException:
        os.close(fd)
        raise
    return fd


def send_fd(sock: socket.socket, fd: int, message: bytes = b"arena") -> None:
    """Send an open file descriptor (and a short message) over a Unix socket."""
    socket.send_fds(sock, [message or b"\0"], [fd])


def recv_fd(sock: socket.socket, bufsize: int = 4096) -> tuple[int, bytes]:
    """Receive ``(fd, message)`` sent by ``send_fd``; the new fd is close-on-exec."""
    flags = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
    message, fds, _flags, _addr = socket.recv_fds(sock, bufsize, 1, flags)
    if not fds:
        raise ConnectionError("expected a file descriptor, got none "
                              f"(message {message!r}: peer closed or sent plain data)")
    return fds[0], message


class StoreClient:
    """One process's view of its node's arena: write objects, read them zero-copy.

    ``write`` and ``read`` only touch memory; which offset to use, and when a
    block may be written or read, is the store's decision (``ObjectStoreCore``
    in the raylet), asked for over the raylet's connection.
    """

    def __init__(self, fd: int, capacity: int | None = None, own_fd: bool = False):
        self.fd = fd
        self.capacity = os.fstat(fd).st_size if capacity is None else capacity
        self._own_fd = own_fd
        # The whole arena, read-write, mapped once and kept (warm page tables).
        self._map = mmap.mmap(fd, self.capacity)
        self._view = memoryview(self._map)

    # -- writing (put, task returns, restore) ---------------------------------

    def write(self, offset: int, data, buffers=()) -> int:
        """Lay out ``data`` + ``buffers`` at ``offset``; returns the bytes written.

        Callers that must first ask the store for a block of the right size
        build the ``Layout`` themselves (``Layout.of``) and call ``write_layout``.
        """
        layout = Layout.of(data, buffers)
        self.write_layout(offset, layout)
        return layout.size

    def write_layout(self, offset: int, layout: Layout) -> None:
        self._check(offset, layout.size)
        pack_into(self._view[offset:offset + layout.size], layout)

    def view(self, offset: int, size: int) -> memoryview:
        """A writable view of a block (for the raylet's spill and restore)."""
        self._check(offset, size)
        return self._view[offset:offset + size]

    # -- reading (get) --------------------------------------------------------

    def read(self, offset: int, size: int, on_release) -> tuple[memoryview, list[memoryview]]:
        """``(data, buffers)``: read-only views of the object, no copy.

        ``on_release()`` runs exactly once, when the last view (and every
        numpy array built on one) is gone; until then the object must stay
        pinned. It runs in whichever thread drops the last reference, possibly
        inside the garbage collector, so keep it tiny and thread-safe: e.g. put
        the object id on a ``queue.SimpleQueue`` (safe even there) and wake the loop.
        ``data`` is a view too: drop it after unpickling (see ``read_value``).
        """
        # The views unpack returns hold the mapping; this frame's reference
        # goes when we return (on a corrupt block, when the error is dropped).
        return unpack(memoryview(self.map(offset, size, on_release)))

    def map(self, offset: int, size: int, on_release=None) -> mmap.mmap:
        """A read-only mapping of one block; ``on_release()`` (if given) runs when it is
        unmapped (after its last view, and every array built on one, is gone)."""
        self._check(offset, size)
        mapping = mmap.mmap(self.fd, size, prot=mmap.PROT_READ, offset=offset)
        if on_release is not None:
            # Not at interpreter exit: by then nobody is left to tell.
            weakref.finalize(mapping, on_release).atexit = False
        return mapping

    def read_value(self, offset: int, size: int, on_release, loads=pickle.loads):
        """Read and unpickle; the value's arrays alone keep the object pinned."""
        return self.load(self.map(offset, size, on_release), loads)

    @staticmethod
    def load(mapping: mmap.mmap, loads=pickle.loads):
        """Unpickle the object in ``mapping`` (see ``map``); arrays point into it (and
        hold it: ``mapping.close()`` raises BufferError while one is alive)."""
        data, buffers = unpack(memoryview(mapping))
        try:
            return loads(data, buffers=buffers)
        finally:
            # pickle copied what it needed from the stream; the buffers are
            # referenced by the arrays built on them and go when those go.
            data.release()

    def _check(self, offset: int, size: int) -> None:
        if offset < 0 or size < 0 or offset + size > self.capacity:
            raise ValueError(f"block [{offset}, {offset + size}) is outside the arena "
                             f"of {self.capacity} bytes")

    def close(self) -> None:
        """Unmap the arena (reads handed out keep their own mappings)."""
        self._view.release()
        self._map.close()
        if self._own_fd:
            os.close(self.fd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
