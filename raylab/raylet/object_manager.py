"""The raylet's object manager: the node's object store, and moving objects between nodes.

The store itself (which block holds which object, pins, eviction and
spilling) is the sans-IO :class:`~raylab.object_store.store_core.ObjectStoreCore`;
this shell carries out its effects (spill files are written on a thread) and
answers the clients of this node (driver and workers).

When a client asks for an object this node does not hold, the object manager
*pulls* it: it asks the object directory where copies are (in Ray 2, the
object's owner; in lecture mode, the GCS object table), reads it from that
node's object manager in chunks, stores it here as a *replica* and tells the
directory about the new copy. Several requests for the same object wait on a
single transfer.
"""
from __future__ import annotations

import asyncio

from raylab import exceptions as exc
from raylab.object_store import effects as fx
from raylab.object_store.arena import StoreClient
from raylab.object_store.spill import (delete_spill_file, make_spill_dir, read_spill_file,
                                       remove_spill_dir, write_spill_file)
from raylab.object_store.store_core import ObjectStoreCore
from raylab.tracing.emit import TRACER, checkpoint, step
from raylab.transport import ConnectionLost

SELF = "object-manager"   # the store's client id for this raylet's own transfers
RESPILL_TEXT = ("{who} is full: it drops its restored copy of {object} ({size}); "
                "the spill file still holds it")


class ObjectManager:
    def __init__(self, raylet, arena_fd: int, capacity: int, spill_dir: str):
        self.raylet = raylet
        self.loop = raylet.loop
        self.client = StoreClient(arena_fd)
        self.spill_dir = make_spill_dir(spill_dir)
        self.core = ObjectStoreCore(self.client.capacity, self.spill_dir)
        self.waiting: dict[tuple, list] = {}     # (kind, client, oid) -> futures
        self.pulls: dict[bytes, asyncio.Future] = {}
        self.clients: dict[object, str] = {}     # connection -> client process address
        self.chunk = raylet.cfg.object_manager_chunk_size
        self._pushing: dict[tuple, int] = {}     # (puller connection, oid) -> offset
        self.full_timeout = raylet.cfg.object_store_full_timeout_ms / 1000

    @property
    def label(self) -> str:
        return self.raylet.label

    def ids(self, oid: bytes) -> dict:
        return {"object": oid.hex(), "node": self.raylet.node_id.hex()}

    # -- carrying out the store core's effects -------------------------------------------
    def apply(self, effects: list) -> None:
        for e in effects:
            t = type(e)
            if t is fx.Created:
                self._resolve(("create", e.client, e.object_id), e.offset)
            elif t is fx.Ready:
                self._resolve(("get", e.client, e.object_id), (e.offset, e.size))
            elif t is fx.Failed:
                self._resolve(("create", e.client, e.object_id), e.error, failed=True)
                self._resolve(("get", e.client, e.object_id), e.error, failed=True)
            elif t is fx.Evict and e.primary:
                # a primary restored earlier: its spill file is still there, so dropping
                # the block spills it again, without writing anything
                TRACER.on and step("object_store", "object", "spill_object",
                                   detail={"size": e.size, "file_kept": True,
                                           "text": RESPILL_TEXT}, **self.ids(e.object_id))
            elif t is fx.Evict:
                TRACER.on and step("object_store", "object", "evict_replica", 1,
                                   detail={"size": e.size, "primary": False},
                                   **self.ids(e.object_id))
                self.raylet.directory.location_removed(e.object_id)
            elif t is fx.Spill:
                self.loop.create_task(self._spill(e))
            elif t is fx.Restore:
                self.loop.create_task(self._restore(e))
            elif t is fx.DeleteFile:
                delete_spill_file(e.path)
            elif t is fx.Reclaim:
                for client in e.clients:
                    self._ask_for_pin(client, e.object_id)

    def _ask_for_pin(self, client, oid: bytes) -> None:
        """A client may keep a pin after its read ended: ask its core worker for it (it
        answers ``store_release`` or ``store_busy``)."""
        address = self.clients.get(client)
        if address is None:  # a transfer to another node: it is reading, by definition
            self.loop.call_soon(self.busy, client, oid)
            return
        conn = self.raylet.conns.get(address)
        if conn is not None and not conn.closed:
            conn.send("store_reclaim", oid)
        else:
            self.loop.create_task(self._ask_later(address, oid))

    async def _ask_later(self, address: str, oid: bytes) -> None:
        try:
            conn = await self.raylet.conn_to(address)
            conn.send("store_reclaim", oid)
        except (ConnectionLost, OSError):
            pass  # the client is gone: its pins went with its connection

    def _resolve(self, key, value, failed: bool = False) -> None:
        futs = self.waiting.get(key)
        if not futs:
            return
        fut = futs.pop(0)
        if not futs:
            del self.waiting[key]
        if not fut.done():
            fut.set_exception(value) if failed else fut.set_result(value)

    def _wait(self, key) -> asyncio.Future:
        fut = self.loop.create_future()
        self.waiting.setdefault(key, []).append(fut)
        return fut

    async def _spill(self, e: fx.Spill) -> None:
        hold = TRACER.on and checkpoint("object_store", "object", "spill_object",
                                        detail={"size": e.size}, **self.ids(e.object_id))
        if hold:
            await hold
        view = self.client.view(e.offset, e.size)
        try:
            await self.loop.run_in_executor(None, write_spill_file, e.path, view)
        except OSError:
            self.apply(self.core.spill_failed(e.object_id))
            return
        self.apply(self.core.spilled(e.object_id))

    async def _restore(self, e: fx.Restore) -> None:
        TRACER.on and step("object_store", "object", "restore_object", detail={"size": e.size},
                           **self.ids(e.object_id))
        view = self.client.view(e.offset, e.size)
        try:
            await self.loop.run_in_executor(None, read_spill_file, e.path, view)
        except OSError as err:
            self.apply(self.core.restore_failed(e.object_id, exc.ObjectLostError(
                e.object_id.hex(), message=f"restoring {e.object_id.hex()} from its spill "
                                           f"file failed: {err}")))
            return
        self.apply(self.core.restored(e.object_id))

    # -- this node's clients (driver, workers) ---------------------------------------------
    def create(self, conn, oid: bytes, size: int, owner: str, primary: bool):
        existing = self.core.objects.get(oid)
        if existing is not None and existing.state != "created" and not existing.deleted:
            # a retried task made the same object again (tasks are deterministic, as in
            # Ray): the copy already here stands; the writer skips writing it
            if primary and not existing.primary:
                existing.primary = True
            return None
        fut = self._wait(("create", conn, oid))
        try:
            self.apply(self.core.create(oid, size, owner, primary, conn))
        except (exc.ObjectStoreFullError, ValueError) as err:
            self.waiting[("create", conn, oid)].remove(fut)
            raise err
        if not fut.done():  # waiting for readers to release room: not for ever
            self.loop.call_later(self.full_timeout, self._give_up, oid, conn)
        return fut

    def _give_up(self, oid: bytes, conn) -> None:
        self.apply(self.core.give_up(oid, conn))

    def seal(self, conn, oid: bytes):
        """The writer finished: the object is readable. Returns what the directory returns
        for a primary copy (lecture mode: a coroutine that ends once the GCS has the entry)."""
        entry = self.core.objects.get(oid)
        if entry is None:
            return None
        self.apply(self.core.seal(oid))
        TRACER.on and step("object_store", "object", "store_object",
                           detail={"size": entry.size, "primary": entry.primary,
                                   "where": f"{self.label}'s object store"}, **self.ids(oid))
        if entry.primary:
            return self.raylet.directory.primary_stored(oid, entry.size, entry.owner)
        return None

    def get_now(self, conn, oid: bytes):
        """The common case, without a task: the object is here and sealed. Else None."""
        entry = self.core.objects.get(oid)
        if entry is None or entry.state != "sealed" or entry.deleted:
            return None
        effects = self.core.get(oid, conn)
        ready = next(e for e in effects if type(e) is fx.Ready)
        self.apply([e for e in effects if e is not ready])
        return (ready.offset, ready.size)

    async def get(self, conn, oid: bytes, owner: str, hints: list):
        """Pin the object for ``conn`` (pulling it here first if needed): (offset, size)."""
        if oid not in self.core.objects:
            await self.pull(oid, owner, hints)
        fut = self._wait(("get", conn, oid))
        try:
            self.apply(self.core.get(oid, conn))
        except KeyError:  # evicted or freed between the pull and now: pull again
            self.waiting[("get", conn, oid)].remove(fut)
            await self.pull(oid, owner, hints)
            fut = self._wait(("get", conn, oid))
            self.apply(self.core.get(oid, conn))
        return await fut

    def release(self, conn, oid: bytes) -> None:
        self.apply(self.core.release(oid, conn))

    def busy(self, conn, oid: bytes) -> None:
        self.apply(self.core.busy(oid, conn))

    def delete(self, oid: bytes) -> None:
        if oid in self.core.objects:
            TRACER.on and step("object_store", "object", "object_deleted", 1, **self.ids(oid))
            self.raylet.directory.deleted(oid)
        self.apply(self.core.delete(oid))

    def disconnect(self, conn) -> None:
        self.clients.pop(conn, None)
        self.apply(self.core.disconnect(conn))

    def owner_died(self, owner: str) -> None:
        """An owner process died: its objects can never be used again; free their copies."""
        for oid in [oid for oid, e in self.core.objects.items() if e.owner == owner]:
            TRACER.on and step("object_store", "object", "object_deleted", 1, **self.ids(oid),
                               detail={"reason": "its owner died"})
            self.apply(self.core.delete(oid))

    # -- pulling from another node ------------------------------------------------------------
    async def pull(self, oid: bytes, owner: str, hints: list) -> None:
        """Make sure a copy is here: one transfer, however many ask at once."""
        if oid in self.core.objects:
            return
        fut = self.pulls.get(oid)
        if fut is None:
            fut = self.pulls[oid] = self.loop.create_task(self._pull(oid, owner, hints))
            fut.add_done_callback(lambda _f: self.pulls.pop(oid, None))
        await asyncio.shield(fut)

    async def _pull(self, oid: bytes, owner: str, hints: list) -> None:
        r = self.raylet
        size, locations = await r.directory.locate(oid, owner, hints)
        sources = [n for n in locations if n != r.node_id and r.raylet_address(n)]
        if not sources:
            raise exc.ObjectLostError(oid.hex(), owner, message=(
                f"Failed to retrieve object {oid.hex()}: no live node holds a copy "
                f"(known copies were on {[r.label_of(n) for n in locations]})."))
        last = None
        for node in sources:
            try:
                await self._transfer(oid, owner, node)
                return
            except (ConnectionLost, OSError, KeyError, exc.ObjectLostError) as err:
                last = err
        raise exc.ObjectLostError(oid.hex(), owner, message=(
            f"Failed to retrieve object {oid.hex()} from any of its copies: {last!r}"))

    async def _transfer(self, oid: bytes, owner: str, node: bytes) -> None:
        r = self.raylet
        src_label = r.label_of(node)
        hold = TRACER.on and checkpoint(
            "object_manager", "object", "pull_object", **self.ids(oid),
            detail={"from": src_label, "to": self.label})
        if hold:
            await hold
        conn = await r.conn_to(r.raylet_address(node))
        size = await conn.call("push_begin", oid)
        try:
            offset = await self.create(SELF, oid, size, owner, False)
            try:
                view = self.client.view(offset, size)
                starts = list(range(0, size, self.chunk))
                for i in range(0, len(starts), 4):  # four chunks in flight at a time
                    batch = starts[i:i + 4]
                    chunks = await asyncio.gather(*(
                        conn.call("read_chunk", oid, s, min(self.chunk, size - s))
                        for s in batch))
                    for s, data in zip(batch, chunks):
                        view[s:s + len(data)] = data
                del view
            except BaseException:
                self.apply(self.core.abort(oid))
                raise
        finally:
            if not conn.closed:
                conn.send("push_end", oid)
        self.apply(self.core.seal(oid))
        TRACER.on and step("object_manager", "object", "object_replicated", **self.ids(oid),
                           detail={"from": src_label, "to": self.label, "size": size,
                                   "chunks": max(1, -(-size // self.chunk))})
        r.directory.replica_stored(oid, size, owner)

    # -- serving another node's pull --------------------------------------------------------
    async def push_begin(self, conn, oid: bytes) -> int:
        """Another node wants this object: pin it for the transfer; returns its size."""
        if oid not in self.core.objects:
            raise KeyError(f"object {oid.hex()} is not on {self.label}")
        fut = self._wait(("get", ("push", conn), oid))
        self.apply(self.core.get(oid, ("push", conn)))
        offset, size = await fut
        self._pushing[(conn, oid)] = offset
        return size

    def read_chunk(self, conn, oid: bytes, start: int, length: int) -> bytes:
        offset = self._pushing[(conn, oid)]
        return bytes(self.client.view(offset + start, length))

    def push_end(self, conn, oid: bytes) -> None:
        if self._pushing.pop((conn, oid), None) is not None:
            self.apply(self.core.release(oid, ("push", conn)))

    def push_end_all(self, conn) -> None:
        """The pulling node went away mid-transfer: unpin what it was reading."""
        for key in [k for k in self._pushing if k[0] is conn]:
            self.push_end(conn, key[1])

    # -- views and shutdown ------------------------------------------------------------------
    def contents(self) -> dict:
        u = self.core.usage()
        return {"capacity": u.capacity, "used": u.used,
                "objects": [(i.object_id, i.size, i.owner, i.primary, bool(i.pinned),
                             i.spilled) for i in self.core.contents()]}

    def shutdown(self) -> None:
        for e in self.core.shutdown():
            if type(e) is fx.DeleteFile:
                delete_spill_file(e.path)
        remove_spill_dir(self.spill_dir)
