"""ObjectRef: a future for a value somewhere in the cluster.

``f.remote()`` and ``ray.put`` return one at once. Each ref knows its object id
and its *owner* (the process that created it, which keeps the object's
status, locations and lineage). Creating, copying into a task, and dropping
refs is what reference counting counts: when the last ref anywhere is gone,
the object is freed.
"""
from __future__ import annotations

import asyncio
import concurrent.futures

from raylab import ids
from raylab.core_worker import current
from raylab.core_worker.serialization import note_ref


class ObjectRef:
    __slots__ = ("_id", "_owner", "_cw", "__weakref__")

    def __init__(self, object_id: bytes, owner_address: str = "", _count: bool = True):
        if not isinstance(object_id, bytes) or len(object_id) != ids.OBJECT_ID_SIZE:
            raise TypeError(f"ObjectRef needs a {ids.OBJECT_ID_SIZE}-byte id, got {object_id!r}")
        self._id = object_id
        self._owner = owner_address
        cw = current.CORE_WORKER if _count else None
        self._cw = cw
        if cw is not None:
            cw.add_local_ref(object_id, owner_address)

    def __del__(self):
        cw = self._cw
        if cw is not None:
            try:
                cw.remove_local_ref(self._id)
            except Exception:
                pass

    # -- Ray's ObjectRef API ------------------------------------------------
    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def task_id(self) -> ids.TaskID:
        return ids.TaskID(ids.task_of_object(self._id))

    def job_id(self) -> ids.JobID:
        return ids.JobID(ids.job_of_task(ids.task_of_object(self._id)))

    def owner_address(self) -> str:
        return self._owner

    def is_nil(self) -> bool:
        return self._id == b"\xff" * ids.OBJECT_ID_SIZE

    @classmethod
    def nil(cls) -> "ObjectRef":
        return cls(b"\xff" * ids.OBJECT_ID_SIZE, "", _count=False)

    def __repr__(self):
        return f"ObjectRef({self._id.hex()})"

    def _repr_html_(self):
        from raylab.views.html import object_ref_html
        return object_ref_html(self)

    def __eq__(self, other):
        return isinstance(other, ObjectRef) and other._id == self._id

    def __hash__(self):
        return hash(self._id)

    def __reduce__(self):
        note_ref(self._id, self._owner)
        return (_rebuild_ref, (self._id, self._owner))

    def __copy__(self):
        return ObjectRef(self._id, self._owner)

    def __deepcopy__(self, memo):
        return ObjectRef(self._id, self._owner)

    # -- futures ----------------------------------------------------------
    def future(self) -> concurrent.futures.Future:
        """A concurrent.futures.Future resolved with the value (or the error)."""
        cw = current.CORE_WORKER
        if cw is None:
            raise RuntimeError("raylab is not initialized; call ray.init() first")
        return cw.objects.get_future(self)

    def __await__(self):
        return asyncio.wrap_future(self.future()).__await__()

    def as_future(self):
        return asyncio.wrap_future(self.future())


def _rebuild_ref(object_id: bytes, owner: str) -> ObjectRef:
    return ObjectRef(object_id, owner)
