"""``ray.put``, ``ray.get`` and ``ray.wait`` on the owner side, and the borrower protocol.

``get`` first looks in this process's memory store (the lecture's Step 1:
"check the local object store"). A missing object owned here is a task still
running: wait for its reply. A missing object owned elsewhere is *borrowed*:
ask its owner for the status (a long poll that answers when the object is
ready), which is the Ray 2 replacement for the lecture's GCS object table
callback.

Borrowers register with the owner as soon as they hold a ref, and tell it
when they drop their last one; both messages travel on the one connection
between the two processes, so they arrive in order.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import time

from raylab import exceptions as exc
from raylab.core_worker.memory_store import ERROR, IN_PLASMA, VALUE, Waiter
from raylab.core_worker.object_ref import ObjectRef
from raylab.core_worker.serialization import deserialize, serialize
from raylab.tracing.emit import TRACER, step
from raylab.tracing.stepper import STEPPER
from raylab.transport import ConnectionLost


class ObjectApi:
    def __init__(self, cw):
        self.cw = cw
        self._fetching: set = set()
        self._borrow_acks: dict = {}   # oid -> future of the owner's add_borrower ack
        self.unacked: set = set()      # those acks still in flight

    # -- ray.put -----------------------------------------------------------------
    def put(self, value, owner_address: str | None = None) -> ObjectRef:
        cw = self.cw
        if isinstance(value, ObjectRef):
            raise TypeError("Calling 'put' on an ray.ObjectRef is not allowed. If you really "
                            "want to do this, you can wrap the ray.ObjectRef in a list and "
                            "call 'put' on it.")
        plasma = cw.plasma
        data, buffers, contained = serialize(value, oob=plasma is not None)
        size = len(data) + sum(memoryview(b).nbytes for b in buffers)
        if buffers and (plasma is None or size < cw.store_threshold):
            data, buffers, contained = serialize(value)  # small: keep it in-band
        return self.put_serialized(data, buffers, contained, size)

    def put_for_owner(self, value, owner_handle) -> ObjectRef:
        """``ray.put(value, _owner=actor)``: store it here, but let the actor own it (its
        lifetime and its directory entry follow that actor, not this process)."""
        cw = self.cw
        info = cw.rpc_sync(cw.gcs_for_user(), "get_actor_info", owner_handle._actor_id, True,
                           None, timeout=30)
        if info is None or info["state"] != "ALIVE":
            raise ValueError(f"the _owner actor {owner_handle!r} is not alive")
        owner = info["address"]
        data, buffers, contained = serialize(value, oob=cw.plasma is not None)
        size = len(data) + sum(memoryview(b).nbytes for b in buffers)
        oid = cw.next_put_id()
        if cw.plasma is not None and size >= cw.store_threshold:
            cw.plasma.put_serialized(oid, data, buffers, owner)
            entry = (IN_PLASMA, size)
        else:
            if buffers:
                data, _b, contained = serialize(value)
            entry = (VALUE, data)
        conn = cw.run_sync(cw.conn_to(owner), 30)
        cw.rpc_sync(conn, "adopt_object", oid, entry, cw.node_id, contained, timeout=30)
        TRACER.on and step("core_worker", "put", "put_object", object=oid.hex(), detail={
            "size": size, "where": f"{cw.node_label}'s object store (owned by an actor)"})
        return ObjectRef(oid, owner)

    def adopt(self, oid: bytes, entry, node: bytes, contained) -> bool:
        """Owner side of ``put(_owner=...)``: this process now owns an object made elsewhere."""
        cw = self.cw
        with cw.lock:
            e = cw.refs.add_owned(oid, is_put=True)
            if contained:
                cw.refs.set_contains(oid, contained)
            if entry[0] == IN_PLASMA:
                e.size, e.primary_node = entry[1], node
                e.locations.add(node)
        cw.store.put(oid, entry)
        return True

    def put_serialized(self, data, buffers, contained, size: int) -> ObjectRef:
        """Store an already-serialized value: in shared memory if large, else in-process."""
        cw = self.cw
        plasma = cw.plasma
        oid = cw.next_put_id()
        with cw.lock:
            e = cw.refs.add_owned(oid, is_put=True)
            if contained:
                cw.refs.set_contains(oid, contained)
        if plasma is not None and size >= cw.store_threshold:
            plasma.put_serialized(oid, data, buffers, cw.address)
            e.size, e.primary_node = size, cw.node_id
            e.locations.add(cw.node_id)
            entry, where = (IN_PLASMA, size), f"{cw.node_label}'s object store"
        else:
            entry, where = (VALUE, data), "in-process memory store"
        cw.store.put(oid, entry)
        TRACER.on and step("core_worker", "put", "put_object", object=oid.hex(), detail={
            "size": size, "where": where})
        return ObjectRef(oid, cw.address)

    # -- ray.get ------------------------------------------------------------------
    def get(self, refs: list, timeout: float | None):
        cw = self.cw
        objects = cw.store.objects
        oids = [r._id for r in refs]
        missing = [oid for oid in oids if oid not in objects]
        if TRACER.on:
            self._trace_get(oids, missing)
        if missing and cw.lecture_mode:
            for oid, ref in zip(oids, refs):
                if oid in missing:  # the local object store asks the GCS (and waits there)
                    cw.call_soon(self._lecture_fetch, oid, ref._owner)
        if missing:
            self._wait_for(missing, len(missing), timeout, "get")
        out = []
        for ref in refs:
            entry = objects.get(ref._id)
            if entry is None:  # freed under us, or shutdown woke us
                raise exc.ReferenceCountingAssertionError(ref.hex())
            out.append(self._value_of(ref, entry))
        if TRACER.on:
            for oid in oids[:4]:
                step("core_worker", "get", "get_returned", object=oid.hex())
        return out

    def _lecture_fetch(self, oid: bytes, owner: str) -> None:
        """Lecture mode, io thread: have this node's object store fetch ``oid`` as soon as it
        exists anywhere (it looks it up in the GCS object table, registering a callback)."""
        async def pull():
            try:
                raylet = await self.cw.conn_to(self.cw.raylet_address)
                await raylet.call("store_pull", oid, owner or self.cw.address, [])
            except Exception:
                pass  # the get itself reports failures, through the owner
        self.cw.loop.create_task(pull())

    def _trace_get(self, oids, missing) -> None:
        """Step 1 of the lecture's ray.get: check the local store for each object."""
        for oid in oids[:4]:
            e = self.cw.refs.entries.get(oid)
            owner = "this process" if e is None or e.owned else "another process"
            if oid not in missing:
                then = "it is there"
            elif self.cw.lecture_mode:
                then = "not there yet; the local object store looks for it in the GCS"
            else:
                then = f"not there yet; the owner ({owner}) will tell where it is"
            step("core_worker", "get", "get_object", object=oid.hex(), detail={
                "hit": oid not in missing, "owner": owner,
                "text": "{who} checks its local object store for {object}: " + then})

    def _value_of(self, ref, entry):
        kind, payload = entry
        if kind == VALUE:
            return deserialize(payload)
        if kind == ERROR:
            if isinstance(payload, exc.RayTaskError):
                raise payload.as_instanceof_cause()
            raise payload
        return self._from_plasma(ref._id, ref._owner)

    def _from_plasma(self, oid: bytes, owner: str):
        """Read a large object from this node's store (pulled here first if elsewhere).
        If every copy is gone, ask its owner to rebuild it from lineage, then read again."""
        cw = self.cw
        owner = owner or cw.address
        e = cw.refs.entries.get(oid)
        alive = cw.alive_nodes()
        hints = sorted(n for n in e.locations if n in alive) if e is not None else []
        for _attempt in range(64):
            try:
                return cw.plasma.get(oid, owner, hints)
            except (exc.OwnerDiedError, exc.ObjectReconstructionFailedError):
                raise
            except exc.ObjectLostError:
                hints = self._recover(oid, owner, hints)
            except ConnectionLost as err:
                raise exc.RaySystemError(f"lost the connection to this node's raylet: {err}")
        raise exc.ObjectReconstructionFailedError(oid.hex(), owner)

    def _recover(self, oid: bytes, owner: str, tried: list) -> list:
        """Every copy we tried (``tried``; none means all the owner knew) failed: the owner
        rebuilds the object (or says it cannot). Wait until it is ready again; returns where
        its copies are now. A worker lends its CPU back meanwhile: the rebuild may need it."""
        cw = self.cw
        blocked = cw.executor is not None and cw.executor.notify_blocked()
        try:
            return self._recover_and_wait(oid, owner, tried)
        finally:
            if blocked:
                cw.executor.notify_unblocked()

    def _recover_and_wait(self, oid: bytes, owner: str, tried: list) -> list:
        cw = self.cw
        if owner == cw.address:
            status = cw.run_sync(self._recover_owned_async(oid, tried), 30)
            if isinstance(status, BaseException):
                raise status
            self._wait_for([oid], 1, None, "get")
            e = cw.refs.entries.get(oid)
            return sorted(e.locations) if e is not None else []
        try:
            conn = cw.run_sync(cw.conn_to(owner), 30)
            status = cw.rpc_sync(conn, "recover_object", oid, tried, timeout=30)
            if isinstance(status, BaseException):
                raise status
            kind, payload = cw.rpc_sync(conn, "get_object_status", oid)  # waits until ready
        except (ConnectionLost, OSError):
            raise exc.OwnerDiedError(oid.hex(), owner) from None
        if kind == ERROR:
            raise payload
        locations = list(payload[1]) if kind == IN_PLASMA else []
        with cw.lock:  # our copy of its status was stale
            e = cw.refs.entries.get(oid)
            if e is not None:
                e.locations = set(locations)
        return locations

    async def _recover_owned_async(self, oid: bytes, tried: list):
        return self.recover_owned(oid, tried)

    def recover_owned(self, oid: bytes, tried: list):
        """io thread, owner side: is there still a copy? If not, re-run the task that made
        it (lineage reconstruction); a put cannot be rebuilt. Returns a status or an error."""
        cw = self.cw
        e = cw.refs.entries.get(oid)
        if e is None or not e.owned:
            return exc.ReferenceCountingAssertionError(oid.hex())
        e.locations &= cw.alive_nodes()
        e.locations -= set(tried) if tried else set(e.locations)  # those copies failed
        if e.locations and not e.value_freed:
            return "exists"   # another live copy: read that one
        if e.pending:
            return "recovering"
        spec = e.lineage
        if spec is None or e.is_put:
            err = exc.ObjectLostError(oid.hex(), cw.address, message=(
                f"Failed to retrieve object {oid.hex()}: all its copies are lost, and it "
                "was created by ray.put, which cannot be reconstructed (only task outputs "
                "can be rebuilt from lineage)."))
            cw.store.put(oid, (ERROR, err))
            return err
        return cw.task_manager.reconstruct(spec, oid)

    def get_by_ids(self, pairs: list) -> list:
        """Values of (object id, owner) arguments a task received by reference."""
        return [self._from_plasma(oid, owner) for oid, owner in pairs]

    def _wait_for(self, missing: list, need: int, timeout: float | None, flow: str) -> bool:
        """Sleep until ``need`` of ``missing`` are in the memory store; False on timeout."""
        cw = self.cw
        for oid in missing:
            e = cw.refs.entries.get(oid)
            if e is not None and not e.owned:
                cw.call_soon(self.fetch, oid)
        waiter = Waiter(need)
        present = cw.store.add_waiter(missing, waiter)
        waiter.remaining -= present
        if waiter.remaining <= 0:
            cw.store.remove_waiter(missing, waiter)
            return True
        blocked = cw.executor is not None and cw.executor.notify_blocked()
        try:
            if cw.executor is None and STEPPER.active:  # a driver waiting on a paused cluster
                ok = STEPPER.wait_through_pauses(waiter, timeout)
            else:
                ok = waiter.wait(timeout)
        finally:
            if blocked:
                cw.executor.notify_unblocked()
        if not ok:
            cw.store.remove_waiter(missing, waiter)
            if flow == "get":
                raise exc.GetTimeoutError(
                    f"Get timed out: some object(s) not ready after {timeout} s.")
        if cw.shutting_down:
            raise exc.RaySystemError("raylab was shut down while waiting for objects")
        return ok

    def get_future(self, ref) -> concurrent.futures.Future:
        fut: concurrent.futures.Future = concurrent.futures.Future()
        cw = self.cw

        def done(oid, entry):
            if fut.done():
                return
            try:
                fut.set_result(self._value_of(ref, entry))
            except BaseException as e:  # the task's error is the future's error
                fut.set_exception(e)

        e = cw.refs.entries.get(ref._id)
        if e is not None and not e.owned and ref._id not in cw.store.objects:
            cw.call_soon(self.fetch, ref._id)
        cw.store.when_ready(ref._id, done)
        return fut

    # -- ray.wait -----------------------------------------------------------------
    def wait(self, refs: list, num_returns: int, timeout: float | None, fetch_local: bool):
        cw = self.cw
        objects = cw.store.objects
        missing = [r._id for r in refs if r._id not in objects]
        ready_now = len(refs) - len(missing)
        if ready_now < num_returns and missing and timeout != 0:
            self._wait_for(missing, num_returns - ready_now, timeout, "wait")
        elif missing:
            for oid in missing:  # timeout=0: only start the fetches
                e = cw.refs.entries.get(oid)
                if e is not None and not e.owned:
                    cw.call_soon(self.fetch, oid)
        ready, not_ready = [], []
        for r in refs:
            if len(ready) < num_returns and r._id in objects:
                ready.append(r)
            else:
                not_ready.append(r)
        TRACER.on and step("core_worker", "wait", "wait_returned", detail={
            "ready": len(ready), "not_ready": len(not_ready)})
        return ready, not_ready

    # -- borrowed objects: ask the owner ---------------------------------------------
    def fetch(self, oid: bytes) -> None:
        """io thread: a borrowed object is needed here; long-poll its owner for it."""
        if oid in self._fetching or oid in self.cw.store.objects:
            return
        e = self.cw.refs.entries.get(oid)
        if e is None or e.owned:
            return
        self._fetching.add(oid)
        self.cw.loop.create_task(self._fetch(oid, e.owner))

    async def _fetch(self, oid: bytes, owner: str) -> None:
        cw = self.cw
        TRACER.on and step("core_worker", "get", "ask_owner", object=oid.hex(), detail={"owner": owner})
        try:
            conn = await cw.conn_to(owner)
            kind, payload = await conn.call("get_object_status", oid)
        except (ConnectionLost, OSError):
            kind, payload = ERROR, exc.OwnerDiedError(oid.hex(), owner)
        finally:
            self._fetching.discard(oid)
        if kind == IN_PLASMA:
            kind, payload = await self.cw.plasma_fetch(oid, payload)
        TRACER.on and step("core_worker", "get", "owner_replied", object=oid.hex(),
             detail={"kind": ("value", "error", "plasma")[kind]})
        cw.store.put(oid, (kind, payload))

    def object_status(self, oid: bytes):
        """Owner side of the long poll: answer when the object is ready."""
        cw = self.cw
        entry = cw.store.objects.get(oid)
        if entry is not None:
            return self._status(oid, entry)
        if cw.refs.entries.get(oid) is None:
            return (ERROR, exc.ReferenceCountingAssertionError(
                oid.hex(), message=f"Object {oid.hex()} was already freed by its owner."))
        fut = cw.loop.create_future()

        def ready(_oid, entry):
            if not fut.done():
                fut.set_result(self._status(oid, entry))

        cw.store.when_ready(oid, ready)
        return fut

    def _status(self, oid: bytes, entry):
        if entry[0] != IN_PLASMA:
            return entry
        e = self.cw.refs.entries.get(oid)
        return (IN_PLASMA, (entry[1], sorted(e.locations) if e is not None else []))

    def object_locations(self, oid: bytes):
        """Owner side, asked by a raylet that must pull the object: where are its copies?"""
        cw = self.cw
        entry = cw.store.objects.get(oid)
        if entry is not None:
            return self._locations_reply(oid, entry)
        if cw.refs.entries.get(oid) is None:
            return ("error", exc.ReferenceCountingAssertionError(
                oid.hex(), message=f"Object {oid.hex()} was already freed by its owner."))
        fut = cw.loop.create_future()
        cw.store.when_ready(oid, lambda _o, entry: fut.done() or fut.set_result(
            self._locations_reply(oid, entry)))
        return fut

    def _locations_reply(self, oid: bytes, entry):
        kind, payload = entry
        if kind == ERROR:
            return ("error", payload)
        if kind != IN_PLASMA:
            return ("inline", None)
        e = self.cw.refs.entries.get(oid)
        return ("ok", payload, sorted(e.locations) if e is not None else [])

    # -- the borrower protocol ------------------------------------------------------------
    def register_borrow(self, oid: bytes, owner: str) -> None:
        """io thread: we now hold a ref owned by ``owner``; tell it before we could drop it."""
        fut = self.cw.loop.create_task(self._register_borrow(oid, owner))
        self._borrow_acks[oid] = fut
        self.unacked.add(fut)
        fut.add_done_callback(self.unacked.discard)

    async def _register_borrow(self, oid: bytes, owner: str) -> None:
        try:
            conn = await self.cw.conn_to(owner)
            await conn.call("add_borrower", oid, self.cw.address)
        except (ConnectionLost, OSError):
            pass

    async def borrows_registered(self, oids) -> None:
        """Wait until the owners of ``oids`` have acknowledged us as a borrower."""
        futs = [self._borrow_acks.get(o) for o in oids]
        futs = [f for f in futs if f is not None]
        if futs:
            await asyncio.gather(*futs, return_exceptions=True)

    def add_borrower(self, oid: bytes, address: str) -> bool:
        cw = self.cw
        with cw.lock:
            added = cw.refs.add_borrower(oid, address)
        if added:
            TRACER.on and step("core_worker", "refcount", "borrower_added", 1, object=oid.hex(),
                 detail={"borrower": address})
        return added

    def borrow_released(self, oid: bytes, address: str) -> None:
        cw = self.cw
        out: list = []
        with cw.lock:
            cw.refs.remove_borrower(oid, address, out)
        if out:
            cw.release(out)

    def release_borrow(self, oid: bytes, entry) -> None:
        """io thread: our last ref to a borrowed object is gone; tell its owner (after it
        has heard that we borrow it: a release that overtook the registration would leak)."""
        ack = self._borrow_acks.pop(oid, None)
        if ack is not None and not ack.done():
            ack.add_done_callback(lambda _f: self._release_now(oid, entry))
            return
        self._release_now(oid, entry)

    def _release_now(self, oid: bytes, entry) -> None:
        conn = self.cw.conns.get(entry.owner)
        if conn is not None and not conn.closed:
            conn.send("borrow_released", oid, self.cw.address)
        else:
            self.cw.loop.create_task(self._send_release(oid, entry.owner))

    async def _send_release(self, oid: bytes, owner: str) -> None:
        try:
            conn = await self.cw.conn_to(owner)
            conn.send("borrow_released", oid, self.cw.address)
        except (ConnectionLost, OSError):
            pass

    def free_owned(self, oid: bytes, entry) -> None:
        """An object we own went out of scope: it is gone from every store."""
        if self.cw.actors.on_handle_freed(oid):
            return
        # freeing an inline object is bookkeeping; freeing shared memory is a lecture step
        TRACER.on and step("core_worker", "refcount", "object_freed", 0 if entry.locations else 1,
                           object=oid.hex(), detail={"reason": "no references remain"})
        if entry.locations and self.cw.plasma is not None:
            self.cw.plasma.free_everywhere(oid, entry.locations)

    def on_location(self, oid, node_id, size, added) -> None:
        e = self.cw.refs.entries.get(oid)
        if e is None:
            return
        if added:
            e.locations.add(node_id)
            e.size = size or e.size
        else:
            e.locations.discard(node_id)

    # -- failures ----------------------------------------------------------------------
    def on_peer_lost(self, address: str) -> None:
        """A process went away: objects it owned are lost to us; its borrows end."""
        cw = self.cw
        out: list = []
        lost = []
        with cw.lock:
            cw.refs.remove_borrower_everywhere(address, out)
            for oid, e in cw.refs.entries.items():
                if not e.owned and e.owner == address:
                    lost.append(oid)  # even a copy we hold is unusable without its owner
        if out:
            cw.release(out)
        for oid in lost:
            if oid in self._fetching:
                continue  # the fetch itself reports OwnerDiedError
            cw.store.put(oid, (ERROR, exc.OwnerDiedError(oid.hex(), address)))

    def on_node_dead(self, node_id: bytes) -> None:
        """Copies on a dead node are gone; objects left with none are rebuilt on demand."""
        with self.cw.lock:
            for e in self.cw.refs.entries.values():
                e.locations.discard(node_id)


def now() -> float:
    return time.monotonic()
