"""The plasma client: this process's door to its node's shared-memory object store.

Large objects (100 KiB and more) live in the node's store, which the raylet
owns. This process maps the whole store once; to *put*, it asks the raylet for
a block (``store_create``), writes the object there itself (one memcpy per
buffer) and *seals* it; to *get*, it asks the raylet to pin the object
(pulling it from another node first if needed: ``store_get``) and maps it
read-only, so numpy arrays come back without a copy. When the last array built
on a read is garbage-collected, the pin is released.

Requests go over a blocking connection straight from the calling thread to
the raylet (like Ray's plasma client socket), not through the io thread.
"""
from __future__ import annotations

import queue

from raylab.core_worker.serialization import deserialize
from raylab.object_store.arena import StoreClient
from raylab.object_store.layout import Layout
from raylab.tracing.emit import TRACER, step
from raylab.transport import SyncConnection


class PlasmaClient:
    def __init__(self, cw, arena_fd: int):
        self.cw = cw
        self.store = StoreClient(arena_fd)
        self.conn = SyncConnection(cw.raylet_address, cw.session.token)
        self.conn.send("store_hello", cw.address)
        self._released: queue.SimpleQueue = queue.SimpleQueue()
        self._flush_scheduled = False

    # -- put ----------------------------------------------------------------------------
    def put_serialized(self, oid: bytes, data, buffers, owner: str) -> bytes:
        """Write one object into this node's store as its primary copy; returns the node id."""
        layout = Layout.of(data, buffers)
        offset = self.conn.call("store_create", oid, layout.size, owner, True)
        if offset is None:
            return self.cw.node_id  # already stored here (a retried task made it before)
        try:
            self.store.write_layout(offset, layout)
        except BaseException:
            self.conn.send("store_abort", oid)
            raise
        self.conn.send("store_seal", oid)
        return self.cw.node_id

    # -- get ----------------------------------------------------------------------------
    def get(self, oid: bytes, owner: str, locations=None):
        """The object's value, zero-copy; pulled to this node first if it is elsewhere."""
        offset, size = self.conn.call("store_get", oid, owner, list(locations or ()))
        return self.store.read_value(offset, size, lambda: self._release(oid),
                                     loads=deserialize)

    def contains(self, oid: bytes) -> bool:
        return self.conn.call("store_contains", oid)

    def ensure_local(self, oid: bytes, owner: str, locations=None) -> None:
        """Pull the object to this node without reading it (``ray.wait(fetch_local=True)``)."""
        self.conn.call("store_pull", oid, owner, list(locations or ()))

    # -- release: from any thread, maybe inside the garbage collector ---------------------
    def _release(self, oid: bytes) -> None:
        self._released.put(oid)  # SimpleQueue.put is safe even inside a GC finalizer
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                self.cw.loop.call_soon_threadsafe(self._flush_releases)
            except RuntimeError:
                pass

    def _flush_releases(self) -> None:
        self._flush_scheduled = False
        batch = []
        while True:
            try:
                batch.append((self._released.get_nowait(),))
            except queue.Empty:
                break
        if batch and not self.conn.closed:
            try:
                self.conn.send_many("store_release", batch)
            except OSError:
                pass

    # -- free --------------------------------------------------------------------------
    def free_everywhere(self, oid: bytes, locations) -> None:
        """io thread: the owner freed the object: delete every copy (primary and replicas)."""
        cw = self.cw
        TRACER.on and step("core_worker", "refcount", "delete_copies", 1, object=oid.hex(),
                           detail={"nodes": [cw.label_of(n) for n in locations]})
        if cw.lecture_mode:  # the GCS object table knows every copy, replicas included
            cw.loop.create_task(_gcs_free(cw, oid))
        for node in locations:
            address = cw.raylet_address_of(node)
            if address is None:
                continue
            conn = cw.conns.get(address)
            if conn is not None and not conn.closed:
                conn.send("store_delete", oid)
            else:
                cw.loop.create_task(_send_delete(cw, address, oid))

    def close(self) -> None:
        self.conn.close()


async def _gcs_free(cw, oid: bytes) -> None:
    try:
        gcs = await cw.ensure_gcs()
        gcs.send("object_table_free", oid)
    except OSError:
        pass


async def _send_delete(cw, address: str, oid: bytes) -> None:
    try:
        conn = await cw.conn_to(address)
        conn.send("store_delete", oid)
    except OSError:
        pass
