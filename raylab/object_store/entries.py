"""What the object store knows about each object: plain records.

An object in a node's store is either the PRIMARY copy (the one its owner
counts on: never evicted, only spilled) or a REPLICA (a copy fetched for a
task on this node: evicted first when room is needed, since the primary copy
lives elsewhere). Its life in the store:

    created --seal--> sealed --spill--> spilling --> spilled --restore--> restoring --> sealed

Readers PIN a sealed object while their zero-copy views are alive (and a moment
longer, unless the store asks for the pin back); a pinned object is never
spilled, evicted or freed under them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CREATED = "created"      # block reserved, the creator is writing it
SEALED = "sealed"        # complete and readable, in memory
SPILLING = "spilling"    # in memory (still readable) while being written to disk
SPILLED = "spilled"      # on disk only
RESTORING = "restoring"  # being read back from disk into a new block


@dataclass
class Entry:
    object_id: bytes
    size: int                     # bytes of the packed object (header + data + buffers)
    owner: str                    # the owner's address
    primary: bool                 # primary copy (True) or replica (False)
    creator: Any = None           # the client that is writing it (while CREATED)
    offset: int | None = None     # where its block is in the arena; None when not in memory
    state: str = CREATED
    pins: dict = field(default_factory=dict)     # client -> number of live reads
    asked: set = field(default_factory=set)      # clients asked to give their pin back
    busy: set = field(default_factory=set)       # ... that answered: still reading it
    waiters: list = field(default_factory=list)  # clients waiting for seal or restore
    spill_path: str | None = None  # set while a copy is on disk (or being written)
    last_access: int = 0          # logical time, for least-recently-used order
    deleted: bool = False         # freed by its owner; goes when pins and IO are done
    spill_failed: bool = False    # writing it to disk failed once: do not try again

    @property
    def pinned(self) -> int:
        return sum(self.pins.values())

    def info(self) -> ObjectInfo:
        return ObjectInfo(self.object_id, self.size, self.owner, self.primary,
                          self.pinned, self.state, self.state == SPILLED)


@dataclass
class Request:
    """A create or a restore waiting for room in the arena (served in FIFO order)."""
    kind: str                     # "create" or "restore"
    object_id: bytes
    size: int
    client: Any = None
    owner: str = ""
    primary: bool = True
    now: int = 0


@dataclass(frozen=True)
class ObjectInfo:
    """One row of the store contents view."""
    object_id: bytes
    size: int
    owner: str
    primary: bool        # primary copy, or replica
    pinned: int          # live zero-copy reads
    state: str
    spilled: bool        # only on disk


@dataclass(frozen=True)
class StoreUsage:
    capacity: int
    used: int            # bytes in blocks (page-rounded)
    free: int
    largest_free: int
    fragmentation: float
    num_objects: int
    num_spilled: int
    spilled_bytes: int
    pinned_bytes: int
    waiting_requests: int
