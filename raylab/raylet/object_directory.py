"""The object directory: where are the copies of an object? Two answers, one interface.

- Ray 2 (``control_plane="ownership"``): the object's **owner** knows. A raylet
  that needs an object asks the owner (a long poll that answers once the object
  exists); a raylet that makes a replica tells the owner about it.
- The lecture (``control_plane="centralized"``): the **GCS object table** knows.
  A node's object store adds an entry when it stores an object (Step 4 of the
  lecture's ``ray.get``); a node looking for an object that has no entry yet
  registers a callback there, fired when the entry is created (Steps 2 and 5).

Nothing else in the raylet knows which of the two is running.
"""
from __future__ import annotations

from raylab import exceptions as exc
from raylab.tracing.emit import TRACER, checkpoint
from raylab.transport import ConnectionLost


class OwnerDirectory:
    """Ray 2: locations live with the object's owner."""

    def __init__(self, raylet):
        self.r = raylet

    async def locate(self, oid: bytes, owner: str, hints: list) -> tuple[int | None, list]:
        """(size or None, node ids holding a copy). The caller's hints skip the question."""
        if hints:
            return None, hints
        hold = TRACER.on and checkpoint(
            "object_manager", "object", "locate_object", object=oid.hex(),
            detail={"at": "owner", "text": "{who} asks the owner of {object} where its copies "
                                           "are"})
        if hold:
            await hold
        try:
            conn = await self.r.conn_to(owner)
            reply = await conn.call("get_object_locations", oid)
        except (ConnectionLost, OSError):
            raise exc.OwnerDiedError(oid.hex(), owner) from None
        if reply[0] == "error":
            raise reply[1]
        if reply[0] != "ok":
            raise exc.ObjectLostError(oid.hex(), owner, message=(
                f"object {oid.hex()} is not in any object store (it is small: its owner "
                "keeps it in its in-process store)"))
        return reply[1], list(reply[2])

    def primary_stored(self, oid: bytes, size: int, owner: str) -> None:
        pass  # the owner learns it from the task's reply (or from its own put)

    def replica_stored(self, oid: bytes, size: int, owner: str) -> None:
        self._tell_owner(owner, "object_location", oid, self.r.node_id, size, True)

    def location_removed(self, oid: bytes) -> None:
        owner = self.r.objects.core.objects.get(oid)
        if owner is not None:
            self._tell_owner(owner.owner, "object_location", oid, self.r.node_id, 0, False)

    def deleted(self, oid: bytes) -> None:
        pass  # the owner freed it: it knows

    def _tell_owner(self, owner: str, method: str, *args) -> None:
        self.r.loop.create_task(self._send(owner, method, *args))

    async def _send(self, owner: str, method: str, *args) -> None:
        try:
            conn = await self.r.conn_to(owner)
            conn.send(method, *args)
        except (ConnectionLost, OSError):
            pass


class GcsObjectTable:
    """The lecture's design: locations live in the GCS object table."""

    def __init__(self, raylet):
        self.r = raylet

    async def locate(self, oid: bytes, owner: str, hints: list) -> tuple[int, list]:
        alive = [n for n in hints if self.r.raylet_address(n)]
        if alive:
            return None, alive
        hold = TRACER.on and checkpoint(
            "object_manager", "object", "locate_object", object=oid.hex(),
            detail={"at": "GCS", "text": "{who} looks up {object}'s location in the GCS "
                                         "object table"})
        if hold:
            await hold
        reply = await self.r.gcs.call("object_table_lookup", oid, self.r.node_id)
        if reply[0] == "error":
            raise reply[1]
        return reply[1], list(reply[2])

    def deleted(self, oid: bytes) -> None:
        self.r.gcs.send("object_table_remove", oid, self.r.node_id)

    async def primary_stored(self, oid: bytes, size: int, owner: str) -> None:
        """Add the entry (Step 4) and wait until the GCS has it: the writer's seal returns
        only then, so the table knows an object before its owner hears it is ready."""
        try:
            await self.r.gcs.call("object_table_add", oid, self.r.node_id, size, owner)
        except (ConnectionLost, OSError):
            pass  # the GCS is gone: nobody can look the object up there any more

    def replica_stored(self, oid: bytes, size: int, owner: str) -> None:
        self.r.gcs.send("object_table_add", oid, self.r.node_id, size, owner)

    def location_removed(self, oid: bytes) -> None:
        self.r.gcs.send("object_table_remove", oid, self.r.node_id)


def make_directory(raylet, control_plane: str):
    return GcsObjectTable(raylet) if control_plane == "centralized" else OwnerDirectory(raylet)
