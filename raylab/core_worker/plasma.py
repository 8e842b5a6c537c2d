"""The plasma client: this process's door to its node's shared-memory object store.

Large objects (100 KiB and more) live in the node's store, which the raylet
owns. This process maps the whole store once; to *put*, it asks the raylet for
a block (``store_create``), writes the object there itself (one memcpy per
buffer) and *seals* it; to *get*, it asks the raylet to pin the object
(pulling it from another node first if needed: ``store_get``) and maps it
read-only, so numpy arrays come back without a copy. When the last array built
on it is garbage-collected, the read is over; the pin (and the mapping) go back
a while later, so a get of the same object again needs no request, or at once
when the store asks for it back (``store_reclaim``: it needs the room, or the
object was freed).

Requests go over a blocking connection straight from the calling thread to
the raylet (like Ray's plasma client socket), not through the io thread.
"""
from __future__ import annotations

import threading
import time

from raylab.core_worker.serialization import deserialize
from raylab.object_store.arena import StoreClient
from raylab.object_store.layout import Layout
from raylab.tracing.emit import TRACER, step
from raylab.tracing.stepper import STEPPER
from raylab.transport import SyncConnection

ASKED_POLL = 0.01  # seconds between checks while the store waits for one of our pins


class _Pin:
    """This process's pin on one object of the node's store, and its mapping of it."""
    __slots__ = ("offset", "size", "mapping", "getting", "last_get", "asked")

    def __init__(self, offset: int, size: int, mapping):
        self.offset, self.size = offset, size
        self.mapping = mapping   # read-only mmap of the object: every read shares it
        self.getting = 1         # gets in progress (they may not lose the mapping)
        self.last_get = 0.0      # time.monotonic() when the last get finished
        self.asked = False       # the store wants the pin back: release once unused


class PlasmaClient:
    def __init__(self, cw, arena_fd: int):
        self.cw = cw
        self.store = StoreClient(arena_fd)
        self.conn = SyncConnection(cw.raylet_address, cw.session.token)
        self.conn.send("store_hello", cw.address)
        self._lock = threading.Lock()
        self._pins: dict[bytes, _Pin] = {}
        # a pin outlives its last get (and its last value) this long, so getting the
        # object again needs no request (plasma's release delay); the store asks for it
        # back sooner when it must
        self.release_delay = cw.cfg.object_store_release_delay_ms / 1000
        self._sweeping = False   # a sweep is scheduled on the io thread
        self._sweep_timer = None

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
        if self.cw.lecture_mode:
            # the lecture's order: the store adds the entry to the GCS object table (Step 4)
            # before anybody can learn the object is ready, so a reader's lookup never waits
            # for an entry that a dying node had not sent yet
            self._request("store_seal", oid)
        else:
            self.conn.send("store_seal", oid)
        return self.cw.node_id

    # -- get ----------------------------------------------------------------------------
    def get(self, oid: bytes, owner: str, locations=None, deadline: float | None = None):
        """The object's value, zero-copy; pulled to this node first if it is elsewhere.

        While this process holds a pin on the object (a value read from it is alive, or
        it was read less than ``object_store_release_delay_ms`` ago), no request is
        needed and the same mapping serves every read: gets share memory and the pages
        stay mapped. Like plasma's clients, we give pins back late (or when the store
        asks), so getting an object again is cheap.
        """
        with self._lock:
            pin = self._pins.get(oid)
            if pin is not None:
                pin.getting += 1
        if pin is None:
            pin = self._pin(oid, owner, locations, deadline)
        try:
            return self.store.load(pin.mapping, deserialize)
        finally:
            with self._lock:
                pin.getting -= 1
                pin.last_get = time.monotonic()

    def _pin(self, oid: bytes, owner: str, locations, deadline=None) -> _Pin:
        """Ask the store for the object (pinned for us) and map it. Past ``deadline``
        (a get's timeout), TimeoutError; the pin granted later is given back."""
        offset, size = self._request("store_get", oid, owner, list(locations or ()),
                                     deadline=deadline,
                                     on_late=lambda _granted: self._send_releases([(oid,)]))
        try:
            mapping = self.store.map(offset, size)
        except BaseException:
            self._send_releases([(oid,)])
            raise
        with self._lock:
            pin = self._pins.get(oid)
            if pin is None:
                pin = self._pins[oid] = _Pin(offset, size, mapping)
                start, self._sweeping = not self._sweeping, True
            else:  # another thread pinned it meanwhile: use that pin, give ours back
                pin.getting += 1
                start = False
        if pin.mapping is not mapping:
            mapping.close()
            self._send_releases([(oid,)])
        if start:
            self._call_on_loop(self._sweep_in, self.release_delay)
        return pin

    def contains(self, oid: bytes) -> bool:
        return self.conn.call("store_contains", oid)

    def ensure_local(self, oid: bytes, owner: str, locations=None) -> None:
        """Pull the object to this node without reading it (``ray.wait(fetch_local=True)``)."""
        self._request("store_pull", oid, owner, list(locations or ()))

    def _request(self, method: str, *args, deadline: float | None = None, on_late=None):
        """A request that may wait on other nodes (a pull). A driver on a cluster paused
        in step mode waits through the pauses, as a blocking ``ray.get`` does."""
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if self.cw.executor is None and STEPPER.active:
            return self.conn.call_waiting(lambda reply: STEPPER.wait_through_pauses(reply, left),
                                          method, *args, on_late=on_late)
        if left is None:
            return self.conn.call(method, *args)
        return self.conn.call_waiting(lambda reply: reply.wait(left), method, *args,
                                      on_late=on_late)

    # -- release (io thread): a pin goes back once unused for a while, or when asked ----
    # A value read from the store holds its mapping: the mapping cannot be closed while
    # any array built on it lives (mmap.close raises BufferError), which is how we know
    # that our reads of an object are over.
    def _sweep(self) -> None:
        now = time.monotonic()
        done, waited_for = [], False
        with self._lock:
            for oid, pin in list(self._pins.items()):
                due = pin.asked or now - pin.last_get >= self.release_delay
                if due and self._unmap(oid, pin):
                    done.append((oid,))
                else:
                    waited_for = waited_for or pin.asked
            self._sweeping = bool(self._pins)
        self._send_releases(done)
        if self._sweeping:
            idle = max(self.release_delay / 2, ASKED_POLL)
            self._sweep_in(ASKED_POLL if waited_for else idle)

    def _sweep_in(self, delay: float) -> None:
        if self._sweep_timer is not None:
            self._sweep_timer.cancel()
        self._sweep_timer = self.cw.loop.call_later(delay, self._sweep)

    def _unmap(self, oid: bytes, pin: _Pin) -> bool:
        """(lock held) Unmap and forget ``pin`` if nothing reads it any more."""
        if pin.getting:
            return False
        try:
            pin.mapping.close()
        except BufferError:
            return False  # a value built on it is still alive
        del self._pins[oid]
        return True

    def reclaim(self, oid: bytes) -> None:
        """io thread: the store wants our pin back (for room, or the object was freed):
        now if no value read from it is alive; else we say we still read it, and give
        it back as soon as the last such value is gone."""
        with self._lock:
            pin = self._pins.get(oid)
            if pin is None:
                return  # released already; the release is on its way
            pin.asked = True
            done = self._unmap(oid, pin)
        if done:
            self._send_releases([(oid,)])
            return
        self._send("store_busy", oid)
        self._sweep_in(ASKED_POLL)

    def _call_on_loop(self, fn, *args) -> None:
        try:
            self.cw.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # shutting down

    def _send(self, method: str, *args) -> None:
        if not self.conn.closed:
            try:
                self.conn.send(method, *args)
            except OSError:
                pass

    def _send_releases(self, batch: list) -> None:
        if batch and not self.conn.closed:
            try:
                self.conn.send_many("store_release", batch)
            except OSError:
                pass

    # -- free --------------------------------------------------------------------------
    def free_everywhere(self, oid: bytes, locations, late: bool = False) -> None:
        """io thread: the owner freed the object: delete every copy (primary and replicas).
        ``late``: a copy the owner heard of only after it had freed the object."""
        cw = self.cw
        TRACER.on and step("core_worker", "refcount", "delete_copies", 1, object=oid.hex(),
                           detail=_deletion(cw, locations, late))
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
        with self._lock:
            for oid, pin in list(self._pins.items()):
                self._unmap(oid, pin)
            # a value still alive keeps its own mapping, which goes when the value goes;
            # a pin kept here would keep it (and its file descriptor) forever
            self._pins.clear()
        try:  # unmap the arena: its memory is freed once no process of the node maps it
            self.store.close()
        except BufferError:
            pass  # a write into it is still in progress on another thread


def _deletion(cw, locations, late: bool) -> dict:
    detail = {"nodes": [cw.label_of(n) for n in locations]}
    if late:
        detail["where"] = ", ".join(detail["nodes"])
        detail["text"] = ("{who} (the owner) hears of a copy of {object} on {where} only "
                          "after freeing it, and deletes that copy too")
    return detail


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
