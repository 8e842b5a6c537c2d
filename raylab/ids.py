"""Deterministic ids, laid out as Ray lays them out.

Ray derives ids instead of drawing them at random: a task's id comes from its
parent task's id and a counter, an object's id is its creating task's id plus
an index. So the same program prints the same ids on every run, which is what
a notebook under test needs.

Layouts (bytes): JobID 4; ActorID 16 = 12 unique + JobID; TaskID 24 = 8 unique
+ ActorID; ObjectID 28 = TaskID + 4-byte little-endian index; NodeID and
WorkerID 28. A normal task's ActorID part is twelve 0xff bytes + its JobID.
"""
from __future__ import annotations

import hashlib
import struct

JOB_ID_SIZE = 4
ACTOR_ID_SIZE = 16
TASK_ID_SIZE = 24
OBJECT_ID_SIZE = 28
UNIQUE_ID_SIZE = 28
_NIL_ACTOR_UNIQUE = b"\xff" * 12
_INDEX = struct.Struct("<I")


def _hash(*parts: bytes, size: int) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
    return h.digest()[:size]


def job_id(n: int) -> bytes:
    return _INDEX.pack(n)


def nil_actor_id(job: bytes) -> bytes:
    return _NIL_ACTOR_UNIQUE + job


def driver_task_id(job: bytes) -> bytes:
    """The driver's own task: every ``ray.put`` in the driver hangs off it."""
    return b"\x00" + b"\xff" * 7 + nil_actor_id(job)


def normal_task_id(job: bytes, parent_task: bytes, counter: int) -> bytes:
    return _hash(parent_task, _INDEX.pack(counter), size=8) + nil_actor_id(job)


def actor_id(job: bytes, parent_task: bytes, counter: int) -> bytes:
    return _hash(b"actor", parent_task, _INDEX.pack(counter), size=12) + job


def actor_creation_task_id(actor: bytes) -> bytes:
    return b"\xff" * 8 + actor


def actor_task_id(actor: bytes, parent_task: bytes, counter: int) -> bytes:
    return _hash(parent_task, _INDEX.pack(counter), actor, size=8) + actor


def object_id(task: bytes, index: int) -> bytes:
    return task + _INDEX.pack(index)


def task_of_object(oid: bytes) -> bytes:
    return oid[:TASK_ID_SIZE]


def object_index(oid: bytes) -> int:
    return _INDEX.unpack_from(oid, TASK_ID_SIZE)[0]


def job_of_task(task: bytes) -> bytes:
    return task[-JOB_ID_SIZE:]


def actor_of_task(task: bytes) -> bytes:
    return task[8:]


def node_id(index: int) -> bytes:
    return _hash(b"raylab-node", _INDEX.pack(index), size=UNIQUE_ID_SIZE)


def worker_id(node: bytes, counter: int) -> bytes:
    return _hash(b"raylab-worker", node, _INDEX.pack(counter), size=UNIQUE_ID_SIZE)


def driver_worker_id(job: bytes) -> bytes:
    return _hash(b"raylab-driver", job, size=UNIQUE_ID_SIZE)


def placement_group_id(job: bytes, counter: int) -> bytes:
    return _hash(b"raylab-pg", job, _INDEX.pack(counter), size=14) + job


def short(b: bytes | None, n: int = 6) -> str:
    """A short hex prefix for views and logs."""
    return b.hex()[:n] if b else "-"


class BaseID:
    """A typed id wrapper for the public API (``.hex()``, ``.binary()``), like Ray's."""

    __slots__ = ("_b",)
    SIZE = UNIQUE_ID_SIZE

    def __init__(self, b: bytes):
        if not isinstance(b, (bytes, bytearray)):
            raise TypeError(f"{type(self).__name__} takes bytes, not {type(b).__name__}")
        self._b = bytes(b)

    @classmethod
    def from_hex(cls, h: str):
        return cls(bytes.fromhex(h))

    @classmethod
    def nil(cls):
        return cls(b"\xff" * cls.SIZE)

    def binary(self) -> bytes:
        return self._b

    def hex(self) -> str:
        return self._b.hex()

    def is_nil(self) -> bool:
        return self._b == b"\xff" * self.SIZE

    def __eq__(self, other):
        return type(other) is type(self) and other._b == self._b

    def __hash__(self):
        return hash(self._b)

    def __repr__(self):
        return f"{type(self).__name__}({self.hex()})"

    def __reduce__(self):
        return (type(self), (self._b,))


class JobID(BaseID):
    __slots__ = ()
    SIZE = JOB_ID_SIZE


class ActorID(BaseID):
    __slots__ = ()
    SIZE = ACTOR_ID_SIZE


class TaskID(BaseID):
    __slots__ = ()
    SIZE = TASK_ID_SIZE


class ObjectID(BaseID):
    __slots__ = ()
    SIZE = OBJECT_ID_SIZE


class NodeID(BaseID):
    __slots__ = ()


class WorkerID(BaseID):
    __slots__ = ()


class PlacementGroupID(BaseID):
    __slots__ = ()
    SIZE = 18
