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
import threading

from raylab.core_worker.serialization import deserialize
from raylab.object_store.arena import StoreClient
from raylab.object_store.layout import Layout
from raylab.tracing.emit import TRACER, step
from raylab.tracing.stepper import STEPPER
from raylab.transport import SyncConnection

RELEASE_DELAY = 0.05  # seconds a pin outlives its last read (plasma's release delay)


class PlasmaClient:
    def __init__(self, cw, arena_fd: int):
        self.cw = cw
        self.store = StoreClient(arena_fd)
        self.conn = SyncConnection(cw.raylet_address, cw.session.token)
        self.conn.send("store_hello", cw.address)
        self._released: queue.SimpleQueue = queue.SimpleQueue()
        self._flush_scheduled = False
        self._lock = threading.Lock()
        self._pins: dict[bytes, list] = {}   # oid -> [offset, size, live reads]

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
        """The object's value, zero-copy; pulled to this node first if it is elsewhere.

        While this process still holds a pin on the object (an earlier read is alive, or
        was dropped less than ``RELEASE_DELAY`` seconds ago), no request is needed: like
        plasma's clients, we release pins a moment late, so a get-use-drop loop stays cheap.
        """
        with self._lock:
            pin = self._pins.get(oid)
            if pin is not None:
                pin[2] += 1
        if pin is None:
            offset, size = self._request("store_get", oid, owner, list(locations or ()))
            with self._lock:
                pin = self._pins.get(oid)
                if pin is None:
                    pin = self._pins[oid] = [offset, size, 1]
                else:  # another thread pinned it meanwhile: give our pin back
                    pin[2] += 1
                    self._released.put(("extra", oid))
        return self.store.read_value(pin[0], pin[1], lambda: self._release(oid),
                                     loads=deserialize)

    def contains(self, oid: bytes) -> bool:
        return self.conn.call("store_contains", oid)

    def ensure_local(self, oid: bytes, owner: str, locations=None) -> None:
        """Pull the object to this node without reading it (``ray.wait(fetch_local=True)``)."""
        self._request("store_pull", oid, owner, list(locations or ()))

    def _request(self, method: str, *args):
        """A request that may wait on other nodes (a pull). A driver on a cluster paused
        in step mode waits through the pauses, as a blocking ``ray.get`` does."""
        if self.cw.executor is None and STEPPER.active:
            return self.conn.call_waiting(lambda reply: STEPPER.wait_through_pauses(reply, None),
                                          method, *args)
        return self.conn.call(method, *args)

    # -- release: from any thread, maybe inside the garbage collector ---------------------
    def _release(self, oid: bytes) -> None:
        self._released.put(("read", oid))  # SimpleQueue.put is safe even inside a GC pass
        if not self._flush_scheduled:
            self._flush_scheduled = True
            try:
                self.cw.loop.call_soon_threadsafe(self._flush_releases)
            except RuntimeError:
                pass

    def _flush_releases(self) -> None:
        """io thread: a read is over; the pin goes back to the store a moment later."""
        self._flush_scheduled = False
        now = []
        while True:
            try:
                kind, oid = self._released.get_nowait()
            except queue.Empty:
                break
            if kind == "extra":
                now.append((oid,))
                continue
            with self._lock:
                pin = self._pins.get(oid)
                if pin is not None:
                    pin[2] -= 1
                    if pin[2] == 0:
                        self.cw.loop.call_later(RELEASE_DELAY, self._maybe_unpin, oid)
        self._send_releases(now)

    def _maybe_unpin(self, oid: bytes) -> None:
        with self._lock:
            pin = self._pins.get(oid)
            if pin is None or pin[2] > 0:
                return  # read again meanwhile
            del self._pins[oid]
        self._send_releases([(oid,)])

    def _send_releases(self, batch: list) -> None:
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
