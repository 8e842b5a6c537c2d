"""What the object store core asks the raylet (its process shell) to do.

``ObjectStoreCore`` never touches memory, files or sockets. Each event it is
given (create, seal, get, release, delete, spilled, ...) returns a list of the
effects below; the raylet carries them out in order and reports back with the
next event (for example ``Spill`` -> write the file in a thread -> ``spilled``).
"""
from __future__ import annotations

from typing import Any, NamedTuple


class Created(NamedTuple):
    """A block is reserved: ``client`` writes the object at ``offset``, then seals it."""
    object_id: bytes
    offset: int
    size: int
    client: Any


class Ready(NamedTuple):
    """The object is pinned for ``client``, who may now map and read it.

    Each ``Ready`` is one pin: the client sends ``release`` once when its last
    view of the object is gone.
    """
    object_id: bytes
    offset: int
    size: int
    client: Any


class Evict(NamedTuple):
    """An object's block was freed to make room, with no IO needed.

    ``primary`` False: a replica, now gone from this node (tell the object
    directory). ``primary`` True: a primary copy already on disk from an
    earlier spill; it stays there, spilled.
    """
    object_id: bytes
    size: int
    primary: bool


class Spill(NamedTuple):
    """Write the block ``[offset, offset + size)`` to ``path``, then call ``spilled``.

    The block stays reserved (and readable) until then.
    """
    object_id: bytes
    offset: int
    size: int
    path: str


class Restore(NamedTuple):
    """Read ``path`` into the new block at ``offset``, then call ``restored``."""
    object_id: bytes
    offset: int
    size: int
    path: str


class Reclaim(NamedTuple):
    """Ask ``clients`` to give back their pins on an object if they no longer read it.

    A client keeps a pin a while after its last view of the object is gone (so the
    next ``get`` needs no request); the store asks for it back when it needs the room
    or the object was freed. Each client answers with ``release``, or with ``busy`` if
    it still reads the object (it releases the pin when it is done).
    """
    object_id: bytes
    clients: tuple


class DeleteFile(NamedTuple):
    """Remove a spill file that is no longer needed."""
    path: str


class Failed(NamedTuple):
    """A request that was waiting (for room, a restore, or a seal) cannot be served.

    ``error`` is the exception to send to ``client`` (usually ObjectStoreFullError).
    """
    object_id: bytes
    client: Any
    error: BaseException
